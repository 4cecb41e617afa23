// Command benchtable reads `go test -bench` output on stdin and prints, per
// scenario and metric, the median of each implementation side by side with
// our ratio to raw TCP and to the best other multiplexer. Sub-benchmarks
// must be named Benchmark<Scenario>/impl=<name>/...; run several counts
// (-count 5) so that the medians mean something.
//
//	go test -run '^$' -bench . -count 5 | go run ./cmd/benchtable
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	ours := flag.String("ours", "ours", "impl name of this library")
	raw := flag.String("raw", "tcp", "impl name of the raw TCP baseline")
	flag.Parse()
	rows, impls, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if len(rows) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark lines with impl=<name> on stdin")
		os.Exit(1)
	}
	print(os.Stdout, rows, impls, *ours, *raw)
}

// key is one table row: a scenario (benchmark name without its impl
// element) and a unit.
type key struct{ scenario, unit string }

var (
	lineRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)
	implRE = regexp.MustCompile(`/impl=([^/\s]+)`)
)

func parse(r io.Reader) (map[key]map[string][]float64, []string, error) {
	rows := map[key]map[string][]float64{}
	var impls []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := lineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		im := implRE.FindStringSubmatch(m[1])
		if im == nil {
			continue
		}
		impl := im[1]
		scenario := strings.Replace(m[1], im[0], "", 1)
		if !slices.Contains(impls, impl) {
			impls = append(impls, impl)
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			k := key{scenario, f[i+1]}
			if rows[k] == nil {
				rows[k] = map[string][]float64{}
			}
			rows[k][impl] = append(rows[k][impl], v)
		}
	}
	return rows, impls, sc.Err()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// higherIsBetter: rates (MB/s, req/s, rt/s) are better high; times, bytes,
// allocations and spreads are better low.
func higherIsBetter(unit string) bool { return strings.HasSuffix(unit, "/s") }

func print(w io.Writer, rows map[key]map[string][]float64, impls []string, ours, raw string) {
	order := []string{ours, "hashicorp", "libp2p", "smux", raw}
	var cols []string
	for _, o := range order {
		if slices.Contains(impls, o) {
			cols = append(cols, o)
		}
	}
	for _, i := range impls {
		if !slices.Contains(cols, i) {
			cols = append(cols, i)
		}
	}
	keys := make([]key, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].scenario != keys[j].scenario {
			return keys[i].scenario < keys[j].scenario
		}
		return keys[i].unit < keys[j].unit
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\tunit\t%s\t%s/%s\t%s/best peer\tn\t\n", strings.Join(cols, "\t"), ours, raw, ours)
	for _, k := range keys {
		byImpl := rows[k]
		cells := make([]string, len(cols))
		n := 0
		for i, c := range cols {
			if v, ok := byImpl[c]; ok {
				cells[i] = format(median(v))
				n = max(n, len(v))
			} else {
				cells[i] = "-"
			}
		}
		vsRaw, vsPeer := "-", "-"
		if o, ok := byImpl[ours]; ok {
			mo := median(o)
			if r, ok := byImpl[raw]; ok {
				vsRaw = ratio(mo, median(r), k.unit)
			}
			best, found := 0.0, false
			for impl, v := range byImpl {
				if impl == ours || impl == raw {
					continue
				}
				m := median(v)
				if !found || (higherIsBetter(k.unit) && m > best) || (!higherIsBetter(k.unit) && m < best) {
					best, found = m, true
				}
			}
			if found {
				vsPeer = ratio(mo, best, k.unit)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t\n", k.scenario, k.unit, strings.Join(cells, "\t"), vsRaw, vsPeer, n)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRatios are ours over theirs for rates (/s: higher is better) and theirs over ours for costs, so > 1 always means we are better.")
}

// ratio returns how many times better ours is than theirs.
func ratio(ours, theirs float64, unit string) string {
	if higherIsBetter(unit) {
		if theirs == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", ours/theirs)
	}
	if ours == 0 {
		if theirs == 0 {
			return "1.00x"
		}
		return "inf"
	}
	return fmt.Sprintf("%.2fx", theirs/ours)
}

func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
