package confidential

import (
	"errors"
	"testing"
)

func TestCheckSNP(t *testing.T) {
	tests := []struct {
		name string
		host SEVHost
		ok   bool
	}{
		{"milan with snp", SEVHost{SEV: true, SEVES: true, SNP: true, CBitPos: 51, ReducedPhysBits: 1}, true},
		{"sev-es only", SEVHost{SEV: true, SEVES: true, CBitPos: 47, ReducedPhysBits: 1}, false},
		{"no leaf", SEVHost{}, false},
		{"snp flag without c-bit", SEVHost{SEV: true, SNP: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.host.CheckSNP()
			if tt.ok != (err == nil) {
				t.Fatalf("CheckSNP() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrNoSNP) {
				t.Errorf("CheckSNP() = %v, want ErrNoSNP", err)
			}
		})
	}
}

// HostSEV reads this machine's CPU; whatever it finds must be coherent.
func TestHostSEV(t *testing.T) {
	h := HostSEV()
	t.Logf("host: %+v", h)
	if (h.SNP || h.SEVES) && !h.SEV {
		t.Errorf("HostSEV() = %+v: SEV-ES or SNP without SEV", h)
	}
	if h.SNP && h.CBitPos == 0 {
		t.Errorf("HostSEV() = %+v: SNP without a C-bit position", h)
	}
	if h.CBitPos > 63 || h.ReducedPhysBits > 63 {
		t.Errorf("HostSEV() = %+v: fields wider than 6 bits", h)
	}
}
