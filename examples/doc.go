// Package examples holds runnable examples of the yamux library, one
// directory each (see README.md). It is its own module so that their
// dependencies stay out of the library's go.mod.
package examples
