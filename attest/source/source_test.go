package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sccontainers/scc/attest/sim"
	"github.com/sccontainers/scc/attest/snp"
)

// tree builds a fake root: paths ending in "/" are directories, the rest
// files with the given contents.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDetect(t *testing.T) {
	const tsmEntry = TSMReportDir + "/agent0/provider"
	tests := []struct {
		name      string
		files     map[string]string
		allowSim  bool
		want      Source
		wantNotes []string // for ErrNoSource: what the error must mention
	}{
		{
			name:  "configfs-tsm on snp",
			files: map[string]string{tsmEntry: "sev_guest\n", SEVGuestDev: ""},
			want:  Source{Kind: SNP, Interface: InterfaceTSM, Path: TSMReportDir},
		},
		{
			name:  "configfs-tsm on tdx",
			files: map[string]string{tsmEntry: "tdx_guest\n", TDXGuestDev: "", TPMRMDev: ""},
			want:  Source{Kind: TDX, Interface: InterfaceTSM, Path: TSMReportDir},
		},
		{
			name:  "sev-guest device",
			files: map[string]string{SEVGuestDev: "", TPMRMDev: ""},
			want:  Source{Kind: SNP, Interface: InterfaceSEVGuest, Path: SEVGuestDev},
		},
		{
			name:  "tdx-guest device",
			files: map[string]string{TDXGuestDev: "", TPMDev: ""},
			want:  Source{Kind: TDX, Interface: InterfaceTDXGuest, Path: TDXGuestDev},
		},
		{
			name:  "tsm of another vendor falls through to the devices",
			files: map[string]string{tsmEntry: "arm_cca_guest\n", TPMRMDev: ""},
			want:  Source{Kind: VTPM, Interface: InterfaceTPM, Path: TPMRMDev},
		},
		{
			name:  "resource-managed tpm first",
			files: map[string]string{TPMDev: "", TPMRMDev: ""},
			want:  Source{Kind: VTPM, Interface: InterfaceTPM, Path: TPMRMDev},
		},
		{
			name:  "raw tpm",
			files: map[string]string{TPMDev: ""},
			want:  Source{Kind: VTPM, Interface: InterfaceTPM, Path: TPMDev},
		},
		{
			name:     "hardware wins over an enabled simulation",
			files:    map[string]string{SEVGuestDev: ""},
			allowSim: true,
			want:     Source{Kind: SNP, Interface: InterfaceSEVGuest, Path: SEVGuestDev},
		},
		{
			name:     "simulation when enabled",
			files:    map[string]string{"/dev/null": ""},
			allowSim: true,
			want:     Source{Kind: Sim, Interface: InterfaceSimulated},
		},
		{
			name:      "nothing",
			files:     map[string]string{"/dev/null": ""},
			wantNotes: []string{"no " + TSMReportDir, "no " + SEVGuestDev, "no " + TPMDev, "simulated TEE not enabled"},
		},
		{
			name:      "configfs not mounted",
			files:     map[string]string{ConfigFSDir + "/": ""},
			wantNotes: []string{"configfs is not mounted"},
		},
		{
			name:      "a device directory is not a device",
			files:     map[string]string{SEVGuestDev + "/": ""},
			wantNotes: []string{"no " + SEVGuestDev},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Detector{Root: tree(t, tt.files), AllowSim: tt.allowSim}
			got, err := d.Detect(context.Background())
			if tt.wantNotes != nil {
				if !errors.Is(err, ErrNoSource) {
					t.Fatalf("Detect() = %v, %v; want ErrNoSource", got, err)
				}
				for _, n := range tt.wantNotes {
					if !strings.Contains(err.Error(), n) {
						t.Errorf("Detect() error %q does not mention %q", err, n)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Detect() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// With no report entry yet, Detect makes one to read its provider, as
// configfs fills a new entry with attributes, and removes it again.
func TestDetectProbesTSM(t *testing.T) {
	for _, tt := range []struct {
		provider string
		want     Kind
	}{{"sev_guest", SNP}, {"tdx_guest", TDX}} {
		t.Run(tt.provider, func(t *testing.T) {
			root := tree(t, map[string]string{TSMReportDir + "/": ""})
			var made string
			orig := probeEntry
			probeEntry = func(p string) error {
				made = p
				if err := os.Mkdir(p, 0o700); err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(p, "provider"), []byte(tt.provider+"\n"), 0o444)
			}
			t.Cleanup(func() { probeEntry = orig })

			got, err := Detector{Root: root}.Detect(context.Background())
			if err != nil || got.Kind != tt.want || got.Interface != InterfaceTSM {
				t.Fatalf("Detect() = %+v, %v; want %s over configfs-tsm", got, err, tt.want)
			}
			if filepath.Dir(made) != filepath.Join(root, TSMReportDir) {
				t.Errorf("probe entry %q not in the report directory", made)
			}
			// The fake entry is a plain directory holding a file, which
			// rmdir refuses; configfs entries hold only attributes and go.
			os.Remove(filepath.Join(made, "provider"))
			os.Remove(made)
		})
	}
}

func TestDetectProbeFailure(t *testing.T) {
	root := tree(t, map[string]string{TSMReportDir + "/": "", TPMRMDev: ""})
	orig := probeEntry
	probeEntry = func(string) error { return os.ErrPermission }
	t.Cleanup(func() { probeEntry = orig })
	got, err := Detector{Root: root}.Detect(context.Background())
	if err != nil || got.Kind != VTPM {
		t.Errorf("Detect() = %+v, %v; want the vTPM after an unreadable configfs-tsm", got, err)
	}
}

func TestDetectCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Detector{AllowSim: true}).Detect(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Detect(cancelled) = %v", err)
	}
}

func TestSimRequested(t *testing.T) {
	tests := []struct {
		cmdline string
		want    bool
	}{
		{"console=ttyS0 scc.tee=sim panic=-1", true},
		{"scc.tee=sim\n", true},
		{"console=ttyS0", false},
		{"scc.tee=snp", false},
		{"scc.tee=sim scc.tee=snp", false},
		{"xscc.tee=sim", false},
		{"scc.tee=simulated", false},
	}
	for _, tt := range tests {
		if got := SimRequested(tt.cmdline); got != tt.want {
			t.Errorf("SimRequested(%q) = %v, want %v", tt.cmdline, got, tt.want)
		}
	}
}

// The names the agent logs are the TEE names the evidence packages put
// in evidence and key broker requests.
func TestNamesMatchEvidenceBackends(t *testing.T) {
	if string(SNP) != snp.TEE || string(Sim) != sim.TEE {
		t.Errorf("names snp=%q sim=%q, backends say %q and %q", SNP, Sim, snp.TEE, sim.TEE)
	}
	s := Source{Kind: SNP, Interface: InterfaceTSM, Path: TSMReportDir}
	if s.Name() != "snp" || s.String() != "snp (configfs-tsm at /sys/kernel/config/tsm/report)" {
		t.Errorf("Name() = %q, String() = %q", s.Name(), s)
	}
}
