package critest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// specResult is the outcome of one critest spec.
type specResult struct {
	Name    string
	State   string // passed, failed, skipped, pending, panicked, timedout, interrupted, aborted
	Message string // why it failed or was skipped
	Where   string // file:line of the failure
	Seconds float64
}

func (r specResult) passed() bool  { return r.State == "passed" }
func (r specResult) skipped() bool { return r.State == "skipped" || r.State == "pending" }

// ginkgoReport is the part of Ginkgo's JSON report (--ginkgo.json-report)
// read here.
type ginkgoReport []struct {
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeType            string
		LeafNodeText            string
		State                   string
		RunTime                 int64 // nanoseconds
		Failure                 struct {
			Message  string
			Location struct {
				FileName   string
				LineNumber int
			}
		}
	}
}

// parseReport reads a Ginkgo JSON report and returns its specs (It
// nodes) by full name.
func parseReport(r io.Reader) (map[string]specResult, error) {
	var rep ginkgoReport
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("decode ginkgo report: %w", err)
	}
	out := map[string]specResult{}
	for _, suite := range rep {
		for _, s := range suite.SpecReports {
			if s.LeafNodeType != "It" {
				continue // suite setup and report nodes
			}
			name := strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " ")
			res := specResult{Name: name, State: s.State, Message: strings.TrimSpace(s.Failure.Message), Seconds: float64(s.RunTime) / 1e9}
			if f := s.Failure.Location.FileName; f != "" {
				res.Where = fmt.Sprintf("%s:%d", trimModPath(f), s.Failure.Location.LineNumber)
			}
			out[name] = res
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ginkgo report holds no spec")
	}
	return out, nil
}

func parseReportFile(path string) (map[string]specResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseReport(f)
}

// trimModPath shortens a module cache path to module@version/file.
func trimModPath(p string) string {
	if i := strings.Index(p, "/pkg/mod/"); i >= 0 {
		return p[i+len("/pkg/mod/"):]
	}
	return p
}

// counts is how many specs ended in each way.
type counts struct{ passed, failed, skipped int }

func count(rs map[string]specResult) counts {
	var c counts
	for _, r := range rs {
		switch {
		case r.passed():
			c.passed++
		case r.skipped():
			c.skipped++
		default:
			c.failed++
		}
	}
	return c
}

func (c counts) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", c.passed, c.failed, c.skipped)
}

// comparison sorts the specs by how scc did against runc.
type comparison struct {
	// regressions pass with runc and fail with scc.
	regressions []string
	// sccOnly pass with scc and not with runc.
	sccOnly []string
	// bothFail fail with both.
	bothFail []string
}

func compare(runc, scc map[string]specResult) comparison {
	var c comparison
	for name, s := range scc {
		r, ok := runc[name]
		if !ok {
			continue
		}
		switch {
		case r.passed() && !s.passed() && !s.skipped():
			c.regressions = append(c.regressions, name)
		case !r.passed() && !r.skipped() && s.passed():
			c.sccOnly = append(c.sccOnly, name)
		case !r.passed() && !r.skipped() && !s.passed() && !s.skipped():
			c.bothFail = append(c.bothFail, name)
		}
	}
	sort.Strings(c.regressions)
	sort.Strings(c.sccOnly)
	sort.Strings(c.bothFail)
	return c
}

// writeSummary writes a Markdown summary of both runs.
func writeSummary(w io.Writer, runc, scc map[string]specResult, c comparison) {
	fmt.Fprintf(w, "# critest: runc vs scc\n\n| handler | passed | failed | skipped |\n| --- | --- | --- | --- |\n")
	for _, h := range []struct {
		name string
		rs   map[string]specResult
	}{{"runc", runc}, {"scc", scc}} {
		n := count(h.rs)
		fmt.Fprintf(w, "| %s | %d | %d | %d |\n", h.name, n.passed, n.failed, n.skipped)
	}
	section := func(title string, names []string, rs map[string]specResult) {
		fmt.Fprintf(w, "\n## %s (%d)\n\n", title, len(names))
		for _, n := range names {
			r := rs[n]
			msg, _, _ := strings.Cut(r.Message, "\n")
			fmt.Fprintf(w, "- %s (%s, %s): %s\n", n, r.State, r.Where, msg)
		}
	}
	section("Pass with runc, fail with scc", c.regressions, scc)
	section("Fail with both", c.bothFail, scc)
	section("Pass with scc only", c.sccOnly, runc)
}
