package agent

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

// FuzzParseRequests feeds the JSON parsers of CreateContainer,
// ExecProcess and UpdateContainer arbitrary bytes: the host is not trusted
// to send well-formed requests, and a bad one must be refused as invalid,
// never crash PID 1.
func FuzzParseRequests(f *testing.F) {
	for _, seed := range []string{
		`{"ociVersion":"1.2.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}`,
		`{"args":["sh","-c","echo"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","hard":1,"soft":1}]}`,
		`{"memory":{"limit":1048576},"pids":{"limit":10}}`,
		`{"process":null}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if spec, err := parseSpec(data); err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("parseSpec error %v is not invalid argument", err)
			}
		} else if spec.Process == nil || len(spec.Process.Args) == 0 {
			t.Fatal("parseSpec accepted a spec without process args")
		} else if _, err := newLibcontainerProcess(spec.Process, true); err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("newLibcontainerProcess error %v is not invalid argument", err)
		}
		if p, err := parseProcess(data); err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("parseProcess error %v is not invalid argument", err)
			}
		} else if len(p.Args) == 0 || p.Cwd == "" {
			t.Fatal("parseProcess accepted a process without args or cwd")
		}
		if _, err := parseResources(data); err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("parseResources error %v is not invalid argument", err)
		}
	})
}
