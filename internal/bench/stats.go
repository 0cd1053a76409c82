package bench

import (
	"sort"
	"time"
)

// Stats summarises the samples of one measurement.
type Stats struct {
	N      int
	Min    time.Duration
	Median time.Duration
	P90    time.Duration
	Max    time.Duration
}

// Summarize computes the statistics of samples; all are zero when there
// are none.
func Summarize(samples []time.Duration) Stats {
	if len(samples) == 0 {
		return Stats{}
	}
	s := sorted(samples)
	return Stats{
		N:      len(s),
		Min:    s[0],
		Median: percentileSorted(s, 50),
		P90:    percentileSorted(s, 90),
		Max:    s[len(s)-1],
	}
}

// Ratio is a's median over b's, or 0 when b has none: the slowdown of a
// relative to the baseline b.
func Ratio(a, b Stats) float64 {
	if b.Median <= 0 {
		return 0
	}
	return float64(a.Median) / float64(b.Median)
}

func sorted(ts []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), ts...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

// percentile returns the p-th percentile of ts: the nearest-rank value,
// except that the median of an even count is the mean of the middle two.
func percentile(ts []time.Duration, p int) time.Duration {
	if len(ts) == 0 {
		return 0
	}
	return percentileSorted(sorted(ts), p)
}

func percentileSorted(s []time.Duration, p int) time.Duration {
	if p == 50 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	// Nearest rank: the smallest value with at least p% of the samples
	// at or below it.
	i := (p*len(s) + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}
