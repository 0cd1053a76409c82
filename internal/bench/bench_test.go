package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, tc := range []struct {
		in       []time.Duration
		p        int
		expected time.Duration
	}{
		{ms(5, 1, 3), 50, 3 * time.Millisecond},
		{ms(4, 1, 3, 2), 50, 2500 * time.Microsecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{ms(7), 90, 7 * time.Millisecond},
		{nil, 50, 0},
	} {
		if got := percentile(tc.in, tc.p); got != tc.expected {
			t.Errorf("p%d of %v = %v, want %v", tc.p, tc.in, got, tc.expected)
		}
	}
}

func TestReportRatio(t *testing.T) {
	var b bytes.Buffer
	Report(&b, "cold start", []Result{
		{Runtime: Runtime{Name: "runc"}, Times: []time.Duration{100 * time.Millisecond}},
		{Runtime: Runtime{Name: "scc"}, Times: []time.Duration{250 * time.Millisecond}},
	})
	if !strings.Contains(b.String(), "2.5x") {
		t.Errorf("report lacks the ratio 2.5x:\n%s", b.String())
	}
}
