package agent

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agentapi "github.com/sccontainers/scc/api/agent/v1"
)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestService(t *testing.T) *Service {
	t.Helper()
	dir := t.TempDir()
	return New(Options{StateDir: filepath.Join(dir, "state"), RootfsDir: filepath.Join(dir, "rootfs")})
}

func TestCreateContainerValidation(t *testing.T) {
	goodProcess := &specs.Process{Args: []string{"/bin/true"}, Cwd: "/"}
	goodSpec := mustJSON(t, &specs.Spec{Version: specs.Version, Process: goodProcess})
	rootfs := &agentapi.Mount{Source: t.TempDir()}

	tests := []struct {
		name string
		req  *agentapi.CreateContainerRequest
		want error
	}{
		{
			name: "empty id",
			req:  &agentapi.CreateContainerRequest{Spec: goodSpec, Rootfs: rootfs},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "id with slash",
			req:  &agentapi.CreateContainerRequest{ContainerId: "a/b", Spec: goodSpec, Rootfs: rootfs},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "dot-dot id",
			req:  &agentapi.CreateContainerRequest{ContainerId: "..", Spec: goodSpec, Rootfs: rootfs},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "empty spec",
			req:  &agentapi.CreateContainerRequest{ContainerId: "c", Rootfs: rootfs},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "bad JSON",
			req:  &agentapi.CreateContainerRequest{ContainerId: "c", Spec: []byte(`{"process":`), Rootfs: rootfs},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "no process",
			req:  &agentapi.CreateContainerRequest{ContainerId: "c", Spec: mustJSON(t, &specs.Spec{Version: specs.Version}), Rootfs: rootfs},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "no args",
			req: &agentapi.CreateContainerRequest{ContainerId: "c", Rootfs: rootfs,
				Spec: mustJSON(t, &specs.Spec{Process: &specs.Process{Cwd: "/"}})},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "no cwd",
			req: &agentapi.CreateContainerRequest{ContainerId: "c", Rootfs: rootfs,
				Spec: mustJSON(t, &specs.Spec{Process: &specs.Process{Args: []string{"sh"}}})},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "no rootfs",
			req:  &agentapi.CreateContainerRequest{ContainerId: "c", Spec: goodSpec},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "relative rootfs",
			req:  &agentapi.CreateContainerRequest{ContainerId: "c", Spec: goodSpec, Rootfs: &agentapi.Mount{Source: "rootfs"}},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "rootfs target without type",
			req: &agentapi.CreateContainerRequest{ContainerId: "c", Spec: goodSpec,
				Rootfs: &agentapi.Mount{Source: "/x", Target: "/y"}},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "rootfs path missing",
			req: &agentapi.CreateContainerRequest{ContainerId: "c", Spec: goodSpec,
				Rootfs: &agentapi.Mount{Source: filepath.Join(t.TempDir(), "absent")}},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "terminal disagreement",
			req: &agentapi.CreateContainerRequest{ContainerId: "c", Spec: goodSpec, Rootfs: rootfs,
				Stdio: &agentapi.StdioConfig{Terminal: true}},
			want: errdefs.ErrInvalidArgument,
		},
		{
			name: "unknown rlimit",
			req: &agentapi.CreateContainerRequest{ContainerId: "c", Rootfs: rootfs,
				Spec: mustJSON(t, &specs.Spec{Process: &specs.Process{Args: []string{"sh"}, Cwd: "/",
					Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}}}})},
			want: errdefs.ErrInvalidArgument,
		},
	}
	if !seccomp.Enabled {
		withSeccomp := &specs.Spec{Process: goodProcess, Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}}}
		tests = append(tests, struct {
			name string
			req  *agentapi.CreateContainerRequest
			want error
		}{
			name: "seccomp without support",
			req:  &agentapi.CreateContainerRequest{ContainerId: "c", Spec: mustJSON(t, withSeccomp), Rootfs: rootfs},
			want: errdefs.ErrNotImplemented,
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestService(t)
			_, err := s.CreateContainer(context.Background(), tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreateContainer = %v, want %v", err, tt.want)
			}
			if len(s.containers) != 0 || len(s.reserved) != 0 {
				t.Fatalf("failed create left state: %d containers, %d reserved", len(s.containers), len(s.reserved))
			}
		})
	}
}

func TestExecProcessValidation(t *testing.T) {
	good := mustJSON(t, &specs.Process{Args: []string{"sh"}, Cwd: "/"})
	tests := []struct {
		name string
		req  *agentapi.ExecProcessRequest
		want error
	}{
		{"empty exec id", &agentapi.ExecProcessRequest{ContainerId: "c", Process: good}, errdefs.ErrInvalidArgument},
		{"bad exec id", &agentapi.ExecProcessRequest{ContainerId: "c", ExecId: "a b", Process: good}, errdefs.ErrInvalidArgument},
		{"empty process", &agentapi.ExecProcessRequest{ContainerId: "c", ExecId: "e"}, errdefs.ErrInvalidArgument},
		{"bad process JSON", &agentapi.ExecProcessRequest{ContainerId: "c", ExecId: "e", Process: []byte("[]")}, errdefs.ErrInvalidArgument},
		{"terminal disagreement", &agentapi.ExecProcessRequest{ContainerId: "c", ExecId: "e", Process: good,
			Stdio: &agentapi.StdioConfig{Terminal: true}}, errdefs.ErrInvalidArgument},
		{"unknown container", &agentapi.ExecProcessRequest{ContainerId: "c", ExecId: "e", Process: good}, errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newTestService(t).ExecProcess(context.Background(), tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ExecProcess = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRequestsOnUnknownContainer(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	calls := map[string]func() error{
		"start": func() error {
			_, err := s.StartContainer(ctx, &agentapi.StartContainerRequest{ContainerId: "x"})
			return err
		},
		"wait": func() error { _, err := s.WaitProcess(ctx, &agentapi.WaitProcessRequest{ContainerId: "x"}); return err },
		"signal": func() error {
			_, err := s.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: "x", Signal: 15})
			return err
		},
		"delete": func() error {
			_, err := s.DeleteContainer(ctx, &agentapi.ContainerRequest{ContainerId: "x"})
			return err
		},
		"pause": func() error {
			_, err := s.PauseContainer(ctx, &agentapi.ContainerRequest{ContainerId: "x"})
			return err
		},
		"resume": func() error {
			_, err := s.ResumeContainer(ctx, &agentapi.ContainerRequest{ContainerId: "x"})
			return err
		},
		"pids": func() error { _, err := s.ListPids(ctx, &agentapi.ContainerRequest{ContainerId: "x"}); return err },
		"stats": func() error {
			_, err := s.StatsContainer(ctx, &agentapi.ContainerRequest{ContainerId: "x"})
			return err
		},
		"update": func() error {
			_, err := s.UpdateContainer(ctx, &agentapi.UpdateContainerRequest{ContainerId: "x", Resources: []byte("{}")})
			return err
		},
		"write":  func() error { _, err := s.WriteStdin(ctx, &agentapi.WriteStdinRequest{ContainerId: "x"}); return err },
		"close":  func() error { _, err := s.CloseStdin(ctx, &agentapi.ProcessRequest{ContainerId: "x"}); return err },
		"stdout": func() error { _, err := s.ReadStdout(ctx, &agentapi.ReadOutputRequest{ContainerId: "x"}); return err },
		"stderr": func() error { _, err := s.ReadStderr(ctx, &agentapi.ReadOutputRequest{ContainerId: "x"}); return err },
		"resize": func() error { _, err := s.ResizePty(ctx, &agentapi.ResizePtyRequest{ContainerId: "x"}); return err },
		"delete exec": func() error {
			_, err := s.DeleteProcess(ctx, &agentapi.ProcessRequest{ContainerId: "x", ExecId: "e"})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("got %v, want not found", err)
			}
		})
	}
}

func TestBadArgumentsBeforeLookup(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	if _, err := s.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: "x", Signal: 65}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("signal 65 = %v, want invalid argument", err)
	}
	if _, err := s.DeleteProcess(ctx, &agentapi.ProcessRequest{ContainerId: "x"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("DeleteProcess without exec id = %v, want invalid argument", err)
	}
	if _, err := s.UpdateContainer(ctx, &agentapi.UpdateContainerRequest{ContainerId: "x", Resources: []byte("{")}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("UpdateContainer with bad JSON = %v, want invalid argument", err)
	}
}

func TestMountFlags(t *testing.T) {
	tests := []struct {
		in        []string
		wantFlags uintptr
		wantData  string
	}{
		{nil, 0, ""},
		{[]string{"ro", "nosuid"}, 0x1 | 0x2, ""},
		{[]string{"rw", "lowerdir=/a", "upperdir=/b"}, 0, "lowerdir=/a,upperdir=/b"},
		{[]string{"nodev", "noexec", "trans=virtio"}, 0x4 | 0x8, "trans=virtio"},
	}
	for _, tt := range tests {
		flags, data := mountFlags(tt.in)
		if flags != tt.wantFlags || data != tt.wantData {
			t.Errorf("mountFlags(%q) = %#x, %q; want %#x, %q", tt.in, flags, data, tt.wantFlags, tt.wantData)
		}
	}
}
