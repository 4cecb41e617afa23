package yamux

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// indirectSentinels are the exported sentinels that no function returns,
// wraps or stores, each with the way callers still get it. The test fails
// if one of them is found returned after all (then it belongs out of this
// list).
var indirectSentinels = map[string]string{
	"ErrRemoteGoAway": "matched by (*GoAwayError).Is for a GoAwayError with Remote set, which OpenStream returns after the peer's GoAway (Session.remoteGoAway)",
}

// TestEveryExportedErrorIsReturned: an exported sentinel that no code path
// returns is a promise the package does not keep. The package's non-test
// files are parsed and each Err* variable must reach a caller (see
// returnedSentinels), or be in indirectSentinels with the reason.
func TestEveryExportedErrorIsReturned(t *testing.T) {
	names, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	declared := exportedErrors(files)
	if len(declared) < 25 {
		t.Fatalf("found only %d sentinels: %v", len(declared), declared)
	}
	returned := returnedSentinels(fset, files)
	for _, name := range declared {
		pos, ok := returned[name]
		_, indirect := indirectSentinels[name]
		switch {
		case ok && indirect:
			t.Errorf("%s is listed in indirectSentinels but reaches a caller at %v: remove it from the list", name, fset.Position(pos))
		case !ok && !indirect:
			t.Errorf("%s is declared but never returned, wrapped in a returned error, or stored in a returned error field", name)
		}
	}
	for name := range indirectSentinels {
		if !slices.Contains(declared, name) {
			t.Errorf("indirectSentinels lists %s, which is not declared", name)
		}
	}
}

// TestReturnedSentinelsFollowsValues checks the analysis on small
// sources: what reaches a caller, and what only looks like it.
func TestReturnedSentinelsFollowsValues(t *testing.T) {
	for _, c := range []struct {
		name     string
		src      string
		returned bool
	}{
		{"return", `func f() error { return ErrX }`, true},
		{"second result", `func f() (int, error) { return 0, ErrX }`, true},
		{"wrapped with %w", `func f() error { return fmt.Errorf("a: %w", ErrX) }`, true},
		{"second %w", `func f(e error) error { return fmt.Errorf("%v %d: %w", e, 1, ErrX) }`, true},
		{"errors.Join", `func f(e error) error { return errors.Join(e, ErrX) }`, true},
		{"assigned, returned", `func f(b bool) error { var err error; if b { err = ErrX }; return err }`, true},
		{"named result", `func f() (err error) { err = ErrX; return }`, true},
		{"through a function", `func g(c error) error { return fmt.Errorf("%w", c) }; func f() error { return g(ErrX) }`, true},
		{"through a method", `type T struct{}; func (T) wrap(n int, c error) error { return c }; func f() error { var t T; return t.wrap(1, ErrX) }`, true},
		{"stored in a returned field", `type T struct{ err error }; func (t *T) set() { t.err = ErrX }; func (t *T) Err() error { return t.err }`, true},
		{"field via a parameter", `type T struct{ err error }; func (t *T) fail(c error) { t.err = c }; func (t *T) Close() { t.fail(ErrX) }; func (t *T) Err() error { e := t.err; return e }`, true},
		{"composite literal field", `type T struct{ err error }; func f() *T { return &T{err: ErrX} }; func (t *T) Err() error { return t.err }`, true},
		{"closure", `func f() func() error { return func() error { return ErrX } }`, true},

		{"only compared", `func f(e error) bool { return e == ErrX }`, false},
		{"only in errors.Is", `func f(e error) bool { return errors.Is(e, ErrX) }`, false},
		{"formatted with %v", `func f() error { return fmt.Errorf("a: %v", ErrX) }`, false},
		{"only logged", `func f() { log(ErrX) }; func log(e error) { println(e.Error()) }`, false},
		{"stored in a field never returned", `type T struct{ err error }; func (t *T) set() { t.err = ErrX }`, false},
		{"stored in another type's field", `type T struct{ err error }; type U struct{ err error }; func (u *U) set() { u.err = ErrX }; func (t *T) Err() error { return t.err }`, false},
		{"stored in another field", `type T struct{ err, last error }; func (t *T) set() { t.last = ErrX }; func (t *T) Err() error { return t.err }`, false},
		{"other function's parameter", `func g(c error) error { return nil }; func h(c error) error { return c }; func f() error { h(nil); return g(ErrX) }`, false},
		{"variadic (not followed)", `func g(cs ...error) error { return cs[0] }; func f() error { return g(nil, ErrX) }`, false},
		{"assigned, not returned", `func f() error { err := ErrX; _ = err; return nil }`, false},
		{"only from Unwrap", `type e struct{}; func (e) Unwrap() error { return ErrX }`, false},
		{"only from Is", `type e struct{}; func (e) Is(t error) bool { return t == ErrX }`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := "package p\nimport (\"errors\"; \"fmt\")\nvar ErrX = errors.New(\"x\")\n" + strings.ReplaceAll(c.src, "; ", "\n")
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "p.go", src, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, got := returnedSentinels(fset, []*ast.File{f})["ErrX"]; got != c.returned {
				t.Errorf("%s: returned = %v; want %v", c.src, got, c.returned)
			}
		})
	}
}

// exportedErrors lists the exported Err* variables declared at package
// level.
func exportedErrors(files []*ast.File) []string {
	var names []string
	for _, f := range files {
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
	}
	return names
}

// returnedSentinels returns, for each exported Err* variable whose value
// reaches a caller of the package, one place where it does. It follows
// values through the package's own code to a fixed point, with go/types
// resolving each name to its variable, field or function (imports are
// stubs: only the package's own objects matter):
//
//   - A value reaches the caller when it is a result of a return statement
//     (also inside a closure, whose caller is not followed), or an argument
//     that such a result wraps: of fmt.Errorf for a %w verb, of
//     errors.Join, or of a package function whose parameter reaches that
//     function's results.
//   - A variable (local, parameter, named result) carries to the caller
//     what is assigned to it if it reaches the caller itself.
//   - A struct field reaches the caller when its value does (for example
//     `return st.err`); what is assigned to that field, or given to it in a
//     composite literal, reaches the caller too, and so does every argument
//     for a parameter that is stored in such a field.
//
// Return statements of Error, Unwrap, Is and As methods do not count: a
// sentinel only in another error's chain, or only compared with, is not
// returned. Values sent on channels are not followed.
func returnedSentinels(fset *token.FileSet, files []*ast.File) map[string]token.Pos {
	info := &types.Info{
		Defs:       map[*ast.Ident]types.Object{},
		Uses:       map[*ast.Ident]types.Object{},
		Selections: map[*ast.SelectorExpr]*types.Selection{},
	}
	conf := types.Config{Importer: stubImporter{}, Error: func(error) {}} // errors: what the stubs lack
	pkg, _ := conf.Check("yamux", fset, files, info)
	a := &sentinelFlow{
		info:      info,
		sentinels: map[types.Object]string{},
		result:    map[types.Object]bool{},
		escapes:   map[types.Object]bool{},
		found:     map[string]token.Pos{},
	}
	for _, name := range exportedErrors(files) {
		a.sentinels[pkg.Scope().Lookup(name)] = name
	}
	for a.changed = true; a.changed; {
		a.changed = false
		for _, f := range files {
			for _, d := range f.Decls {
				if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
					a.visit(fd)
				}
			}
		}
	}
	return a.found
}

// stubImporter gives every import an empty package.
type stubImporter struct{}

func (stubImporter) Import(p string) (*types.Package, error) {
	name := path.Base(p)
	if len(name) > 1 && name[0] == 'v' && strings.Trim(name[1:], "0123456789") == "" {
		name = path.Base(path.Dir(p)) // math/rand/v2
	}
	pkg := types.NewPackage(p, name)
	pkg.MarkComplete()
	return pkg, nil
}

// sentinelFlow is the state of returnedSentinels; every set only grows.
type sentinelFlow struct {
	info      *types.Info
	sentinels map[types.Object]string // the exported Err* variables
	result    map[types.Object]bool   // variables whose value reaches their function's results
	escapes   map[types.Object]bool   // variables and fields whose value reaches a caller whatever their function returns
	found     map[string]token.Pos
	changed   bool
}

// visit applies the rules to one function's body once.
func (a *sentinelFlow) visit(fd *ast.FuncDecl) {
	noRet := false
	if fd.Recv != nil {
		switch fd.Name.Name {
		case "Error", "Unwrap", "Is", "As":
			noRet = true
		}
	}
	if fd.Type.Results != nil && !noRet {
		for _, fl := range fd.Type.Results.List {
			for _, n := range fl.Names {
				a.add(a.result, a.info.Defs[n])
			}
		}
	}
	ast.Inspect(fd.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ReturnStmt:
			if !noRet {
				for _, r := range n.Results {
					a.mark(r, false)
				}
			}
		case *ast.AssignStmt:
			if len(n.Lhs) == len(n.Rhs) {
				for i, lhs := range n.Lhs {
					a.assign(a.object(lhs), n.Rhs[i])
				}
			}
		case *ast.ValueSpec:
			if len(n.Names) == len(n.Values) {
				for i, name := range n.Names {
					a.assign(a.info.Defs[name], n.Values[i])
				}
			}
		case *ast.CompositeLit:
			for _, el := range n.Elts {
				if kv, ok := el.(*ast.KeyValueExpr); ok {
					if key, ok := kv.Key.(*ast.Ident); ok {
						a.assign(a.info.Uses[key], kv.Value) // a struct literal's key is its field
					}
				}
			}
		case *ast.CallExpr:
			for i, arg := range n.Args {
				if a.escapes[a.param(n, i)] {
					a.mark(arg, true)
				}
			}
		}
		return true
	})
}

// assign applies obj = rhs.
func (a *sentinelFlow) assign(obj types.Object, rhs ast.Expr) {
	if obj == nil {
		return
	}
	if a.result[obj] {
		a.mark(rhs, false)
	}
	if a.escapes[obj] {
		a.mark(rhs, true)
	}
}

// mark records that the value of e reaches its function's results (escape
// false) or a caller whatever the function returns (escape true), and so
// do the variables, fields and sentinels it carries.
func (a *sentinelFlow) mark(e ast.Expr, escape bool) {
	for _, v := range a.carried(e) {
		obj := a.object(v)
		if name, ok := a.sentinels[obj]; ok {
			if _, seen := a.found[name]; !seen {
				a.found[name] = v.Pos()
				a.changed = true
			}
			continue
		}
		if obj, ok := obj.(*types.Var); ok && (escape || obj.IsField()) {
			a.add(a.escapes, obj) // a field reaches a caller wherever it is read
		} else {
			a.add(a.result, obj)
		}
	}
}

func (a *sentinelFlow) add(set map[types.Object]bool, obj types.Object) {
	if _, ok := obj.(*types.Var); ok && !set[obj] {
		set[obj] = true
		a.changed = true
	}
}

// object returns the variable or field that e names, or nil.
func (a *sentinelFlow) object(e ast.Expr) types.Object {
	switch e := ast.Unparen(e).(type) {
	case *ast.Ident:
		if obj := a.info.Uses[e]; obj != nil {
			return obj
		}
		return a.info.Defs[e]
	case *ast.SelectorExpr:
		if sel := a.info.Selections[e]; sel != nil {
			if sel.Kind() == types.FieldVal {
				return sel.Obj()
			}
			return nil
		}
		return a.info.Uses[e.Sel] // pkg.Name
	}
	return nil
}

// carried returns the expressions naming variables, fields or sentinels
// whose values are in the value of e.
func (a *sentinelFlow) carried(e ast.Expr) []ast.Expr {
	switch e := ast.Unparen(e).(type) {
	case *ast.Ident, *ast.SelectorExpr:
		return []ast.Expr{e}
	case *ast.CallExpr:
		var out []ast.Expr
		for _, arg := range a.wrappedArgs(e) {
			out = append(out, a.carried(arg)...)
		}
		for i, arg := range e.Args {
			if a.result[a.param(e, i)] {
				out = append(out, a.carried(arg)...)
			}
		}
		return out
	}
	return nil
}

// param returns the parameter of the package function that call calls
// statically for argument i, or nil.
func (a *sentinelFlow) param(call *ast.CallExpr, i int) types.Object {
	var fn *types.Func
	switch fun := ast.Unparen(call.Fun).(type) {
	case *ast.Ident:
		fn, _ = a.info.Uses[fun].(*types.Func)
	case *ast.SelectorExpr:
		if sel := a.info.Selections[fun]; sel != nil {
			fn, _ = sel.Obj().(*types.Func)
		}
	}
	if fn == nil {
		return nil
	}
	params := fn.Origin().Signature().Params()
	if i >= params.Len() || (fn.Signature().Variadic() && i >= params.Len()-1) {
		return nil // a variadic argument goes into a slice, not followed
	}
	return params.At(i)
}

// wrappedArgs returns the arguments that the error made by call wraps: of
// errors.Join all, of fmt.Errorf those for a %w verb. A format that is not
// one literal is read as far as its literal start; arguments spread with
// append([]any{...}, rest...)... count from their literal part.
func (a *sentinelFlow) wrappedArgs(call *ast.CallExpr) []ast.Expr {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return nil
	}
	id, ok := sel.X.(*ast.Ident)
	if !ok {
		return nil
	}
	pkg, ok := a.info.Uses[id].(*types.PkgName)
	if !ok {
		return nil
	}
	switch p := pkg.Imported().Path(); {
	case p == "errors" && sel.Sel.Name == "Join":
		return call.Args
	case p == "fmt" && sel.Sel.Name == "Errorf" && len(call.Args) > 0:
	default:
		return nil
	}
	args := call.Args[1:]
	if call.Ellipsis.IsValid() {
		args = args[:len(args)-1]
		if spread, ok := call.Args[len(call.Args)-1].(*ast.CallExpr); ok && len(spread.Args) > 0 {
			if id, ok := spread.Fun.(*ast.Ident); ok && id.Name == "append" {
				if lit, ok := spread.Args[0].(*ast.CompositeLit); ok {
					args = append(slices.Clip(args), lit.Elts...)
				}
			}
		}
	}
	var out []ast.Expr
	for _, i := range wrapVerbs(literalPrefix(call.Args[0])) {
		if i < len(args) {
			out = append(out, args[i])
		}
	}
	return out
}

// literalPrefix returns the constant start of a string expression.
func literalPrefix(e ast.Expr) string {
	switch e := ast.Unparen(e).(type) {
	case *ast.BasicLit:
		if s, err := strconv.Unquote(e.Value); err == nil {
			return s
		}
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			return literalPrefix(e.X)
		}
	}
	return ""
}

// wrapVerbs returns the indexes of the arguments that format's %w verbs
// take. It stops at an explicit argument index ("%[2]w"), which no code
// here uses.
func wrapVerbs(format string) []int {
	var out []int
	arg := 0
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		for i++; i < len(format); i++ {
			c := format[i]
			if c == '[' {
				return out
			}
			if c == '*' {
				arg++
				continue
			}
			if strings.IndexByte("+-# 0123456789.", c) < 0 {
				break
			}
		}
		if i == len(format) || format[i] == '%' {
			continue
		}
		if format[i] == 'w' {
			out = append(out, arg)
		}
		arg++
	}
	return out
}
