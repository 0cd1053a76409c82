package measure

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

// The expected registers below were computed outside this package (Python
// hashlib: SHA-384 over the 48-byte register and the digest, the load
// options as UTF-16LE with a NUL).

func TestExtendRTMR(t *testing.T) {
	empty := sha512.Sum384(nil)
	got, err := ExtendRTMR(make([]byte, Size), empty[:])
	if err != nil {
		t.Fatal(err)
	}
	const want = "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a"
	if h := hex.EncodeToString(got); h != want {
		t.Errorf("ExtendRTMR(0, SHA-384(\"\")) = %s, want %s", h, want)
	}
	if _, err := ExtendRTMR(make([]byte, Size), make([]byte, 32)); err == nil {
		t.Error("ExtendRTMR accepted a SHA-256 digest")
	}
	if _, err := ReplayRTMR([][]byte{empty[:], {1}}); err == nil {
		t.Error("ReplayRTMR accepted a short digest")
	}
	if r, err := ReplayRTMR(nil); err != nil || hex.EncodeToString(r) != strings.Repeat("00", Size) {
		t.Errorf("ReplayRTMR(nil) = %x, %v; want zeros", r, err)
	}
}

func TestLoadOptions(t *testing.T) {
	tests := []struct {
		cmdline string
		initrd  bool
		arg     InitrdArg
		want    string // the UTF-16 text, without the NUL
	}{
		{"quiet", false, InitrdArgSuffix, "quiet"},
		{"quiet", true, InitrdArgSuffix, "quiet initrd=initrd"},
		{"quiet", true, InitrdArgPrefix, "initrd=initrd quiet"},
		{"", true, InitrdArgSuffix, " initrd=initrd"},
		{"", true, InitrdArgPrefix, "initrd=initrd "},
		{"", false, InitrdArgSuffix, ""},
	}
	for _, tt := range tests {
		got, err := LoadOptions(tt.cmdline, tt.initrd, tt.arg)
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		if tt.want != "" {
			for _, c := range tt.want {
				want = append(want, byte(c), 0)
			}
			want = append(want, 0, 0)
		}
		if string(got) != string(want) {
			t.Errorf("LoadOptions(%q, %v, %v) = %x, want %x", tt.cmdline, tt.initrd, tt.arg, got, want)
		}
	}
	if _, err := LoadOptions("x", true, InitrdArg(9)); err == nil {
		t.Error("LoadOptions accepted an unknown placement")
	}
}

func TestDirectBootRTMR2(t *testing.T) {
	const cmdline = "console=ttyS0 quiet"
	tests := []struct {
		name   string
		boot   func() DirectBoot
		want   string
		events int
	}{
		{"initrd after", func() DirectBoot {
			return DirectBoot{Cmdline: cmdline, Initrd: strings.NewReader("hello initrd")}
		}, "ff8575528b5dfce8a3411d775284ad682ae335baefce2ad547541e23c3ec92135222e36b2ae5e61501044604bb0f1dea", 2},
		{"initrd before", func() DirectBoot {
			return DirectBoot{Cmdline: cmdline, Initrd: strings.NewReader("hello initrd"), InitrdArg: InitrdArgPrefix}
		}, "f1fcc51fceb1ccf38f9cf1a1c1f00860f5737c191b5e865fab9f46a8549831bfd049ad13580e8b670376d0870a333bb6", 2},
		{"no initrd", func() DirectBoot { return DirectBoot{Cmdline: cmdline} },
			"0b0a40c1d017734917d7ae53cdc501d8bc9a22700a23ff75577bab95d8a4ede4d69c3efc0245449731384d4ce83f5211", 1},
		{"nothing", func() DirectBoot { return DirectBoot{} }, strings.Repeat("00", Size), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DirectBootRTMR2(tt.boot())
			if err != nil {
				t.Fatal(err)
			}
			if h := hex.EncodeToString(got); h != tt.want {
				t.Errorf("RTMR2 = %s, want %s", h, tt.want)
			}
			events, err := RTMR2Events(tt.boot())
			if err != nil || len(events) != tt.events {
				t.Errorf("RTMR2Events() = %d events, %v; want %d", len(events), err, tt.events)
			}
		})
	}
	broken := errors.New("disk on fire")
	if _, err := DirectBootRTMR2(DirectBoot{Initrd: iotest.ErrReader(broken)}); !errors.Is(err, broken) {
		t.Errorf("unreadable initrd: error = %v", err)
	}
}
