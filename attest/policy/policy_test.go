package policy

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/sccontainers/scc/attest"
	"github.com/sccontainers/scc/attest/vtpm"
)

var (
	m1, m2   = strings.Repeat("aa", 48), strings.Repeat("bb", 48)
	hd1, hd2 = strings.Repeat("11", 32), strings.Repeat("22", 32)
	pcr1     = strings.Repeat("cc", 32)
	root     = strings.Repeat("cd", 32)
	ak       = strings.Repeat("ef", 32)
	snap     = strings.Repeat("5a", 32)
	img1     = strings.Repeat("1a", 32)
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string // part of the error; empty: valid
	}{
		{name: "empty", doc: `{}`},
		{name: "sim", doc: `{"attestation":{"sim":{"allow":true,"roots":["` + root + `"],"measurements":["` + m1 + `"]}}}`},
		{name: "snp with everything", doc: `{"attestation":{"snp":{"allow":true,"measurements":["` + m1 + `"],"allow_debug":true,"allow_migration_agent":true,"host_data":"` + hd1 + `","min_tcb":{"bootloader":1,"tee":0,"snp":8,"microcode":115}}}}`},
		{name: "tdx with everything", doc: `{"attestation":{"tdx":{"allow":true,"mrtd":["` + m1 + `"],"rtmrs":{"0":["` + m1 + `"],"3":["` + m2 + `","` + m1 + `"]},"mr_config_id":"` + m2 + `","mr_owner":"` + m1 + `","mr_owner_config":"` + m1 + `","mr_seam":"` + m1 + `","min_tee_tcb_svn":"03000500000000000000000000000000","min_qe_svn":8,"min_pce_svn":11,"allow_debug":false}}}`},
		{name: "vtpm", doc: `{"attestation":{"vtpm":{"allow":true,"trusted_aks":["` + ak + `"],"pcrs":{"9":["` + pcr1 + `"]}}}}`},
		{name: "disabled sim needs nothing", doc: `{"attestation":{"sim":{"allow":false}}}`},
		{name: "vtpm origin", doc: `{"attestation":{"vtpm":{"allow":true,"trusted_aks":["` + ak + `"],"pcrs":{"9":["` + pcr1 + `"]},"origin":{"fresh":true,"snapshots":["` + snap + `"]}}}}`},
		{name: "vtpm origin accepting nothing", doc: `{"attestation":{"vtpm":{"allow":true,"trusted_aks":["` + ak + `"],"pcrs":{"9":["` + pcr1 + `"]},"origin":{}}}}`, wantErr: "accepts no guest"},
		{name: "vtpm origin with a short snapshot", doc: `{"attestation":{"vtpm":{"allow":true,"trusted_aks":["` + ak + `"],"pcrs":{"9":["` + pcr1 + `"]},"origin":{"snapshots":["ab"]}}}}`, wantErr: "snapshots"},
		{name: "vtpm origin approving the zero snapshot", doc: `{"attestation":{"vtpm":{"allow":true,"trusted_aks":["` + ak + `"],"pcrs":{"9":["` + pcr1 + `"]},"origin":{"snapshots":["` + strings.Repeat("00", 32) + `"]}}}}`, wantErr: "zero digest"},
		{name: "origin on snp", doc: `{"attestation":{"snp":{"allow":true,"measurements":["` + m1 + `"],"origin":{"fresh":true}}}}`, wantErr: "origin does not apply to snp"},
		{name: "reference values in workloads only", doc: `{"attestation":{"snp":{"allow":true,"min_tcb":{"bootloader":0,"tee":0,"snp":8,"microcode":0}},"tdx":{"allow":true},"vtpm":{"allow":true,"trusted_aks":["` + ak + `"]}},
			"workloads":{"web":{"snp":{"measurements":["` + m1 + `"],"host_data":"` + hd1 + `"},"tdx":{"mrtd":["` + m1 + `"],"mr_config_id":"` + m2 + `"},"vtpm":{"pcrs":{"10":["` + pcr1 + `"]}}}},
			"resources":{"default/web/*":{"workloads":["web"]}}}`},

		{name: "images", doc: `{"attestation":{"snp":{"allow":true,"measurements":["` + m1 + `"],"images":["sha256:` + img1 + `"]}},"resources":{"default/k/*":{"images":["sha256:` + img1 + `"]}}}`},
		{name: "image without algorithm", doc: `{"attestation":{"snp":{"allow":true,"measurements":["` + m1 + `"],"images":["` + img1 + `"]}}}`, wantErr: "is not a sha256 digest"},
		{name: "resource image upper-case", doc: `{"resources":{"default/k/*":{"images":["sha256:` + strings.ToUpper(img1) + `"]}}}`, wantErr: "is not a sha256 digest"},
		{name: "bad root", doc: `{"attestation":{"sim":{"allow":true,"roots":["xyz"],"measurements":["` + m1 + `"]}}}`, wantErr: "xyz"},
		{name: "roots on snp", doc: `{"attestation":{"snp":{"allow":true,"roots":["` + root + `"],"measurements":["` + m1 + `"]}}}`, wantErr: "roots does not apply to snp"},
		{name: "short host data", doc: `{"attestation":{"snp":{"allow":true,"host_data":"ab","measurements":["` + m1 + `"]}}}`, wantErr: "host_data"},
		{name: "unknown top-level member", doc: `{"attestations":{}}`, wantErr: "unknown field"},
		{name: "trailing data", doc: `{} {}`, wantErr: "trailing data"},
		{name: "unknown TEE", doc: `{"attestation":{"sgx":{"allow":true}}}`, wantErr: `unknown TEE "sgx"`},
		{name: "snp allowed without measurements", doc: `{"attestation":{"snp":{"allow":true}}}`, wantErr: "allow needs reference values: measurements"},
		{name: "sim allowed without roots", doc: `{"attestation":{"sim":{"allow":true,"measurements":["` + m1 + `"]}}}`, wantErr: "simulated root"},
		{name: "tdx allowed without mrtd", doc: `{"attestation":{"tdx":{"allow":true,"mr_config_id":"` + m1 + `"}}}`, wantErr: "mrtd"},
		{name: "vtpm allowed without trusted AK", doc: `{"attestation":{"vtpm":{"allow":true,"pcrs":{"9":["` + pcr1 + `"]}}}}`, wantErr: "trusted_aks"},
		{name: "vtpm PCR out of range", doc: `{"attestation":{"vtpm":{"allow":true,"trusted_aks":["` + ak + `"],"pcrs":{"24":["` + pcr1 + `"]}}}}`, wantErr: `index "24"`},
		{name: "vtpm PCR without values", doc: `{"attestation":{"vtpm":{"allow":true,"trusted_aks":["` + ak + `"],"pcrs":{"9":[]}}}}`, wantErr: "no accepted values"},
		{name: "RTMR out of range", doc: `{"attestation":{"tdx":{"allow":true,"mrtd":["` + m1 + `"],"rtmrs":{"4":["` + m1 + `"]}}}}`, wantErr: `index "4"`},
		{name: "PCRs on snp", doc: `{"attestation":{"snp":{"allow":true,"measurements":["` + m1 + `"],"pcrs":{"9":["` + pcr1 + `"]}}}}`, wantErr: "pcrs does not apply to snp"},
		{name: "min_tcb on tdx", doc: `{"attestation":{"tdx":{"allow":true,"mrtd":["` + m1 + `"],"min_tcb":{"bootloader":0,"tee":0,"snp":0,"microcode":0}}}}`, wantErr: "min_tcb does not apply to tdx"},
		{name: "short TEE_TCB_SVN", doc: `{"attestation":{"tdx":{"allow":true,"mrtd":["` + m1 + `"],"min_tee_tcb_svn":"03"}}}`, wantErr: "min_tee_tcb_svn"},
		{name: "workload of an unknown TEE", doc: `{"workloads":{"web":{"sgx":{}}}}`, wantErr: `unknown TEE "sgx"`},
		{name: "empty workload", doc: `{"workloads":{"web":{}}}`, wantErr: "no reference values"},
		{name: "workload with a platform term", doc: `{"workloads":{"web":{"snp":{"allow":true}}}}`, wantErr: "unknown field"},
		{name: "bad workload name", doc: `{"workloads":{"a/b":{"snp":{"measurements":["` + m1 + `"]}}}}`, wantErr: "workload name"},
		{name: "snp workload without measurement", doc: `{"attestation":{"snp":{"allow":true}},"workloads":{"web":{"snp":{"host_data":"` + hd1 + `"}}}}`, wantErr: `workload "web" needs measurements`},
		{name: "rule for unknown workload", doc: `{"resources":{"a/b/c":{"workloads":["web"]}}}`, wantErr: `unknown workload "web"`},
		{name: "bad resource pattern", doc: `{"resources":{"a/b":{}}}`, wantErr: "repository/type/tag"},
		{name: "rule for unknown TEE", doc: `{"resources":{"a/b/c":{"tees":["sgx"]}}}`, wantErr: `unknown TEE "sgx"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse() = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse() = %v, want %v mentioning %q", err, ErrInvalid, tc.wantErr)
			}
		})
	}
}

func mustParse(t *testing.T, doc string) Document {
	t.Helper()
	d, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestMatch(t *testing.T) {
	workloads := mustParse(t, `{"attestation":{"snp":{"allow":true},"vtpm":{"allow":true,"trusted_aks":["`+ak+`"]},"tdx":{"allow":false}},
		"workloads":{
			"web":{"snp":{"measurements":["`+m1+`"],"host_data":"`+hd1+`"},"vtpm":{"pcrs":{"10":["`+pcr1+`"]}}},
			"db":{"snp":{"measurements":["`+m1+`","`+m2+`"],"host_data":"`+hd2+`"}},
			"any-init":{"snp":{"measurements":["`+m2+`"]}}}}`)
	topLevel := mustParse(t, `{"attestation":{"snp":{"allow":true,"measurements":["`+m1+`"],"host_data":"`+hd1+`"}},
		"workloads":{"web":{"snp":{"measurements":["`+m1+`"],"host_data":"`+hd1+`"}},"db":{"snp":{"measurements":["`+m1+`"],"host_data":"`+hd2+`"}}}}`)

	tests := []struct {
		name    string
		doc     Document
		tee     string
		values  Values
		want    []string
		wantErr error
		detail  string
	}{
		{name: "one workload", doc: workloads, tee: "snp", values: Values{"measurement": unhex(m1), "host_data": unhex(hd1)}, want: []string{"web"}},
		{name: "two workloads", doc: workloads, tee: "snp", values: Values{"measurement": unhex(m2), "host_data": unhex(hd2)}, want: []string{"any-init", "db"}},
		{name: "init data of no workload", doc: workloads, tee: "snp", values: Values{"measurement": unhex(m1), "host_data": unhex(hd2[:62] + "00")},
			wantErr: ErrReferenceMismatch, detail: "workload db: host_data 22222222"},
		{name: "vtpm PCR matches", doc: workloads, tee: "vtpm", values: Values{"pcr10": unhex(pcr1), "pcr0": make([]byte, 32)}, want: []string{"web"}},
		{name: "vtpm PCR not quoted", doc: workloads, tee: "vtpm", values: Values{"pcr9": unhex(pcr1)},
			wantErr: ErrReferenceMismatch, detail: "pcr10 is not in the evidence"},
		{name: "TEE not allowed", doc: workloads, tee: "tdx", values: Values{}, wantErr: ErrTEENotAllowed},
		{name: "TEE not listed", doc: workloads, tee: "sim", values: Values{}, wantErr: ErrTEENotAllowed},
		{name: "top level holds, one workload", doc: topLevel, tee: "snp", values: Values{"measurement": unhex(m1), "host_data": unhex(hd1)}, want: []string{"web"}},
		{name: "top level fails", doc: topLevel, tee: "snp", values: Values{"measurement": unhex(m1), "host_data": unhex(hd2)},
			wantErr: ErrReferenceMismatch, detail: "snp policy: host_data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.doc.Match(tc.tee, tc.values)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.detail) {
					t.Fatalf("Match() = %v, want %v mentioning %q", err, tc.wantErr, tc.detail)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("Match() = %v, %v; want %v", got, err, tc.want)
			}
		})
	}

	ms, err := workloads.LaunchMeasurements("snp")
	if err != nil || len(ms) != 4 {
		t.Fatalf("LaunchMeasurements(workloads) = %d, %v; want the 4 listed", len(ms), err)
	}
	if ms, _ := topLevel.LaunchMeasurements("snp"); len(ms) != 1 {
		t.Fatalf("LaunchMeasurements(top level) = %d, want 1", len(ms))
	}
}

func TestAllowResource(t *testing.T) {
	d := mustParse(t, `{"workloads":{"web":{"snp":{"measurements":["`+m1+`"]}},"db":{"snp":{"measurements":["`+m2+`"]}}},
		"resources":{
			"hw/*/*":{"tees":["snp"]},
			"hw/key/pinned":{"measurements":["`+strings.ToUpper(m1)+`"]},
			"*/*/*":{"tees":["snp","sim","vtpm"]},
			"web/*/*":{"workloads":["web"]}}}`)
	tests := []struct {
		resource string
		s        Session
		detail   string // part of the refusal; empty: allowed
	}{
		{"default/key/1", Session{TEE: "sim", Measurement: m2}, ""},
		{"default/key/1", Session{TEE: "tdx", Measurement: m2}, `rule "*/*/*" does not allow TEE "tdx"`},
		{"hw/key/1", Session{TEE: "snp", Measurement: m2}, ""},
		{"hw/key/1", Session{TEE: "sim", Measurement: m1}, `rule "hw/*/*" does not allow TEE "sim"`},
		// Two rules match: both apply.
		{"hw/key/pinned", Session{TEE: "snp", Measurement: m1}, ""},
		{"hw/key/pinned", Session{TEE: "snp", Measurement: m2}, "does not allow measurement"},
		{"hw/key/pinned", Session{TEE: "vtpm"}, `rule "hw/*/*" does not allow TEE "vtpm"`},
		{"web/key/1", Session{TEE: "snp", Workloads: []string{"db", "web"}}, ""},
		{"web/key/1", Session{TEE: "snp", Workloads: []string{"db"}}, `rule "web/*/*" allows workloads [web], the session matched [db]`},
		{"web/key/1", Session{TEE: "vtpm"}, "the session matched none"},
	}
	for _, tc := range tests {
		t.Run(tc.resource+" "+tc.s.TEE, func(t *testing.T) {
			err := d.AllowResource(tc.resource, tc.s)
			if tc.detail == "" {
				if err != nil {
					t.Fatalf("AllowResource() = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrResourceDenied) || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("AllowResource() = %v, want %v mentioning %q", err, ErrResourceDenied, tc.detail)
			}
		})
	}
}

func TestBackendPolicies(t *testing.T) {
	d := mustParse(t, `{"attestation":{
		"snp":{"allow":true,"measurements":["`+m1+`"],"allow_debug":true,"min_tcb":{"bootloader":1,"tee":2,"snp":3,"microcode":4}},
		"tdx":{"allow":true,"mrtd":["`+m1+`"],"mr_seam":"`+m2+`","min_tee_tcb_svn":"03000500000000000000000000000000","min_qe_svn":8},
		"vtpm":{"allow":true,"trusted_aks":["`+ak+`"],"pcrs":{"9":["`+pcr1+`"]}},
		"sim":{"allow":false,"roots":["`+root+`"],"measurements":["`+m1+`"]}}}`)
	rd := make([]byte, 64)
	sp, err := d.SNPPolicy("snp", rd)
	if err != nil || len(sp.Measurements) != 1 || !sp.AllowDebug || sp.MinimumTCB.SnpSpl != 3 || sp.MinimumTCB.UcodeSpl != 4 {
		t.Fatalf("SNPPolicy = %+v, %v", sp, err)
	}
	tp, err := d.TDXPolicy(rd)
	if err != nil || hex.EncodeToString(tp.MRSeam) != m2 || tp.MinimumTeeTcbSvn[2] != 5 || tp.MinimumQESVN != 8 || tp.MRTD != nil {
		t.Fatalf("TDXPolicy = %+v, %v", tp, err)
	}
	vo, err := d.VTPMOptions([]byte("nonce"))
	if err != nil || len(vo.TrustedAKs) != 1 || hex.EncodeToString(vo.TrustedAKs[0][:]) != ak || vo.InsecureAcceptAnyAK {
		t.Fatalf("VTPMOptions = %+v, %v", vo, err)
	}
	if roots := d.SimRoots(); roots != nil {
		t.Fatalf("SimRoots() of a disallowed sim = %v", roots)
	}
}

func TestCheckOrigin(t *testing.T) {
	// lifecycleReused logs a restore from each snapshot byte given, then
	// the given number of cleans.
	lifecycleReused := func(cleans int, restores ...byte) *vtpm.Claims {
		var l vtpm.Log
		for _, r := range restores {
			b, _ := vtpm.RestoreEvent{Snapshot: [32]byte(bytes.Repeat([]byte{r}, 32))}.MarshalBinary()
			l.Append(vtpm.PCRLifecycle, vtpm.EventRestore, b)
		}
		for g := 1; g <= cleans; g++ {
			b, _ := vtpm.CleanEvent{Generation: uint64(g)}.MarshalBinary()
			l.Append(vtpm.PCRLifecycle, vtpm.EventClean, b)
		}
		c := &vtpm.Claims{PCRs: map[int][]byte{vtpm.PCRLifecycle: make([]byte, 32)}, Events: l.Events()}
		if v, ok := l.Replay()[vtpm.PCRLifecycle]; ok {
			c.PCRs[vtpm.PCRLifecycle] = v[:]
		}
		return c
	}
	lifecycle := func(restores ...byte) *vtpm.Claims { return lifecycleReused(0, restores...) }
	doc := func(origin string) Document {
		vt := `"allow":true,"trusted_aks":["` + ak + `"],"pcrs":{"9":["` + pcr1 + `"]}`
		if origin != "" {
			vt += `,"origin":` + origin
		}
		return mustParse(t, `{"attestation":{"vtpm":{`+vt+`}}}`)
	}
	approved := `{"snapshots":["` + snap + `"]}`
	tests := []struct {
		name    string
		doc     Document
		claims  *vtpm.Claims
		wantErr error
	}{
		{"no origin terms: fresh", doc(""), lifecycle(), nil},
		{"no origin terms: restored", doc(""), lifecycle(0x11), nil},
		{"fresh only: fresh", doc(`{"fresh":true}`), lifecycle(), nil},
		{"fresh only: restored", doc(`{"fresh":true}`), lifecycle(0x5a), ErrOriginNotAllowed},
		{"approved only: restored from it", doc(approved), lifecycle(0x5a), nil},
		{"approved only: fresh", doc(approved), lifecycle(), ErrOriginNotAllowed},
		{"approved only: restored from another", doc(approved), lifecycle(0x11), ErrOriginNotAllowed},
		{"approved only: restored twice, once from another", doc(approved), lifecycle(0x5a, 0x11), ErrOriginNotAllowed},
		{"approved only: from an unknown snapshot", doc(approved), lifecycle(0), ErrOriginNotAllowed},
		{"either: fresh", doc(`{"fresh":true,"snapshots":["` + snap + `"]}`), lifecycle(), nil},
		{"either: restored", doc(`{"fresh":true,"snapshots":["` + snap + `"]}`), lifecycle(0x5a), nil},
		{"lifecycle not quoted", doc(`{"fresh":true}`), &vtpm.Claims{PCRs: map[int][]byte{}}, vtpm.ErrPolicy},
		{"no origin terms: reused", doc(""), lifecycleReused(3), nil},
		{"fresh only: reused", doc(`{"fresh":true}`), lifecycleReused(1), ErrOriginNotAllowed},
		{"fresh, reused once: reused once", doc(`{"fresh":true,"max_generation":1}`), lifecycleReused(1), nil},
		{"fresh, reused once: first tenant", doc(`{"fresh":true,"max_generation":1}`), lifecycleReused(0), nil},
		{"fresh, reused once: reused twice", doc(`{"fresh":true,"max_generation":1}`), lifecycleReused(2), ErrOriginNotAllowed},
		{"fresh, reused: restored and reused", doc(`{"fresh":true,"max_generation":5}`), lifecycleReused(1, 0x5a), ErrOriginNotAllowed},
		{"approved, reused: restored and reused", doc(`{"snapshots":["` + snap + `"],"max_generation":5}`), lifecycleReused(2, 0x5a), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.doc.CheckOrigin(tc.claims)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("CheckOrigin() = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// FuzzParse feeds hostile policy documents (the admin API's bodies, once
// authenticated) to the parser and what it accepts to the evaluators.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"attestation":{"snp":{"allow":true,"measurements":["` + m1 + `"],"host_data":"` + hd1 + `","min_tcb":{"bootloader":1,"tee":0,"snp":8,"microcode":115}},"sim":{"allow":true,"roots":["` + root + `"],"measurements":["` + m1 + `"]}}}`))
	f.Add([]byte(`{"attestation":{"tdx":{"allow":true},"vtpm":{"allow":true,"trusted_aks":["` + ak + `"]}},"workloads":{"web":{"tdx":{"mrtd":["` + m1 + `"],"rtmrs":{"2":["` + m2 + `"]}},"vtpm":{"pcrs":{"10":["` + pcr1 + `"]}}}},"resources":{"default/*/*":{"workloads":["web"],"tees":["tdx"]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %v does not wrap ErrInvalid", err)
			}
			return
		}
		for _, tee := range TEEs {
			_, _ = d.Match(tee, Values{"measurement": unhex(m1), "pcr10": unhex(pcr1)})
			if _, err := d.LaunchMeasurements(tee); err != nil {
				t.Fatalf("LaunchMeasurements of a valid document: %v", err)
			}
		}
		_ = d.AllowResource("default/key/1", Session{TEE: "snp", Workloads: []string{"web"}})
	})
}

func TestCheckImages(t *testing.T) {
	a := attest.Image{Manifest: "sha256:" + strings.Repeat("a", 64), Config: "sha256:" + strings.Repeat("c", 64)}
	viaIndex := attest.Image{Manifest: "sha256:" + strings.Repeat("b", 64), Index: "sha256:" + strings.Repeat("d", 64), Config: a.Config}
	d := Document{Attestation: map[string]TEE{
		"snp":  {Allow: true, Images: []string{a.Manifest, viaIndex.Index}},
		"vtpm": {Allow: true},
	}}
	for _, tc := range []struct {
		name   string
		tee    string
		images []attest.Image
		known  bool
		want   string // part of the error; empty: accepted
	}{
		{"listed", "snp", []attest.Image{a}, true, ""},
		{"listed by its index", "snp", []attest.Image{a, viaIndex}, true, ""},
		{"one not listed", "snp", []attest.Image{a, {Manifest: "sha256:" + strings.Repeat("e", 64)}}, true, "runs image sha256:eeee"},
		{"none reported", "snp", nil, true, "reported none"},
		{"evidence cannot tell", "snp", []attest.Image{a}, false, "does not show"},
		{"policy without images", "vtpm", nil, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.CheckImages(tc.tee, tc.images, tc.known)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrImageNotAllowed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckImages = %v, want ErrImageNotAllowed saying %q", err, tc.want)
			}
		})
	}
	rd := Document{Resources: map[string]ResourceRule{"default/k/*": {Images: []string{a.Manifest}}}}
	if err := rd.AllowResource("default/k/x", Session{TEE: "snp", Images: []attest.Image{a}}); err != nil {
		t.Errorf("resource for a listed image: %v", err)
	}
	if err := rd.AllowResource("default/k/x", Session{TEE: "snp", Images: []attest.Image{viaIndex}}); !errors.Is(err, ErrResourceDenied) || !errors.Is(err, ErrImageNotAllowed) {
		t.Errorf("resource for another image: %v", err)
	}
}
