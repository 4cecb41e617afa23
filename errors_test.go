package yamux

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryExportedErrorIsReturned: an exported sentinel that no code path
// returns is a promise the package does not keep. Each Err* variable
// in a non-test file must be used in some non-test file other than its own
// declaration.
func TestEveryExportedErrorIsReturned(t *testing.T) {
	fset := token.NewFileSet()
	files, _ := filepath.Glob("*.go")
	var names []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, exportedErrors(f)...)
	}
	if len(names) < 15 {
		t.Fatalf("found only %d sentinels: %v", len(names), names)
	}
	uses := map[string]int{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		pf, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(pf, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				uses[id.Name]++
			}
			return true
		})
	}
	for _, n := range names {
		if uses[n] < 2 { // the declaration itself is one
			t.Errorf("%s is declared but never used outside its declaration", n)
		}
	}
}

// exportedErrors lists the exported Err* variables declared in f.
func exportedErrors(f *ast.File) []string {
	var names []string
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, spec := range gd.Specs {
			for _, n := range spec.(*ast.ValueSpec).Names {
				if n.IsExported() && strings.HasPrefix(n.Name, "Err") {
					names = append(names, n.Name)
				}
			}
		}
	}
	return names
}
