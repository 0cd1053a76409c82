package bench

import "testing"

func TestParseMachine(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\ncpu MHz\t\t: 2450.000\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := parseCPUModel(cpuinfo); got != "AMD EPYC 7B13" {
		t.Errorf("cpu model %q", got)
	}
	if got := parseCPUModel("processor: 0\n"); got != "" {
		t.Errorf("cpu model of a cpuinfo without one: %q", got)
	}
	meminfo := "MemTotal:       24569956 kB\nMemFree:        22000000 kB\n"
	if got := parseMemTotal(meminfo); got != 24569956*1024 {
		t.Errorf("MemTotal %d", got)
	}
	if got := parseMemTotal("MemTotal: lots\n"); got != 0 {
		t.Errorf("MemTotal of garbage: %d", got)
	}
}
