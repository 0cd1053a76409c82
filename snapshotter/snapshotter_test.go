package snapshotter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// serve starts the snapshotter in a temporary directory and returns a
// client of it as containerd's proxy plugin makes one.
func serve(t *testing.T) (snapshots.Snapshotter, *Snapshotter) {
	t.Helper()
	root := t.TempDir()
	sn, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := filepath.Join(t.TempDir(), "sn.sock")
	ln, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sn, ln) }()
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		sn.Close()
		if _, err := os.Stat(addr); !os.IsNotExist(err) {
			t.Errorf("socket %s left behind", addr)
		}
	})
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), Name), sn
}

// TestUnpackSkipsLayers walks through what containerd's unpacker and its
// metadata store do with a remote snapshotter: Prepare of each layer with
// its chain ID as target, which must say "already exists"; a Walk for the
// committed target; then the container's Prepare on the top layer.
func TestUnpackSkipsLayers(t *testing.T) {
	client, sn := serve(t)
	ctx := context.Background()
	chain := []string{"sha256:aaaa", "sha256:bbbb"}
	parent := ""
	for i, target := range chain {
		labels := map[string]string{
			snapshots.LabelSnapshotRef:                   target,
			"containerd.io/snapshot/cri.layer-digest":    fmt.Sprintf("sha256:layer%d", i),
			"containerd.io/snapshot/cri.image-ref":       "127.0.0.1:5000/app:v1",
			"containerd.io/snapshot/cri.manifest-digest": "sha256:m",
		}
		key := fmt.Sprintf("k8s.io/%d/extract-1 %s", i, target)
		_, err := client.Prepare(ctx, key, parent, snapshots.WithLabels(labels))
		if !errdefs.IsAlreadyExists(err) {
			t.Fatalf("layer %d: prepare returned %v, want already exists", i, err)
		}
		// A second unpack of the same image (another namespace) skips too.
		if _, err := client.Prepare(ctx, "other/"+key, parent, snapshots.WithLabels(labels)); !errdefs.IsAlreadyExists(err) {
			t.Fatalf("layer %d again: prepare returned %v, want already exists", i, err)
		}
		var found []snapshots.Info
		filter := fmt.Sprintf(`labels.%q==%s,parent==%q`, snapshots.LabelSnapshotRef, target, parent)
		if err := client.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
			found = append(found, i)
			return nil
		}, filter); err != nil {
			t.Fatal(err)
		}
		if len(found) != 1 || found[0].Name != target || found[0].Kind != snapshots.KindCommitted || found[0].Parent != parent {
			t.Fatalf("layer %d: walk for the target found %+v", i, found)
		}
		if _, err := client.Stat(ctx, key); !errdefs.IsNotFound(err) {
			t.Errorf("layer %d: the unpack key stays: %v", i, err)
		}
		parent = target
	}

	mounts, err := client.Prepare(ctx, "k8s.io/3/container", parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 1 || mounts[0].Type != "bind" {
		t.Fatalf("container mounts %+v, want one bind mount", mounts)
	}
	checkEmpty(t, mounts[0])
	if !GuestPulled(mounts[0].Source) {
		t.Errorf("%s is not recognised as a guest-pull rootfs", mounts[0].Source)
	}
	if again, err := client.Mounts(ctx, "k8s.io/3/container"); err != nil || again[0].Source != mounts[0].Source {
		t.Errorf("mounts %+v, %v; want %+v", again, err, mounts)
	}
	view, err := client.View(ctx, "k8s.io/4/view", parent)
	if err != nil {
		t.Fatal(err)
	}
	if view[0].Options[len(view[0].Options)-1] != "ro" {
		t.Errorf("view options %v, want read-only", view[0].Options)
	}
	if _, err := client.Prepare(ctx, "k8s.io/5/orphan", "sha256:none"); !errdefs.IsNotFound(err) {
		t.Errorf("prepare on a missing parent: %v, want not found", err)
	}

	for _, key := range []string{"k8s.io/3/container", "k8s.io/4/view", chain[1], chain[0]} {
		if err := client.Remove(ctx, key); err != nil {
			t.Fatalf("remove %s: %v", key, err)
		}
	}
	if _, err := os.Stat(filepath.Dir(mounts[0].Source)); !os.IsNotExist(err) {
		t.Errorf("container dir stays after remove: %v", err)
	}
	left, _ := os.ReadDir(filepath.Join(sn.root, "snapshots"))
	if len(left) != 0 {
		t.Errorf("snapshot dirs left: %v", left)
	}
}

func checkEmpty(t *testing.T, m mount.Mount) {
	t.Helper()
	entries, err := os.ReadDir(m.Source)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("container rootfs %s holds %v, want nothing", m.Source, entries)
	}
}

func TestCommitAndCleanup(t *testing.T) {
	client, sn := serve(t)
	ctx := context.Background()
	m, err := client.Prepare(ctx, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m[0].Source, "f"), make([]byte, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := client.Usage(ctx, "a")
	if err != nil || u.Size < 8192 {
		t.Errorf("usage %+v, %v; want at least 8192 bytes", u, err)
	}
	if err := client.Commit(ctx, "committed", "a"); err != nil {
		t.Fatal(err)
	}
	info, err := client.Stat(ctx, "committed")
	if err != nil || info.Kind != snapshots.KindCommitted {
		t.Fatalf("stat committed: %+v, %v", info, err)
	}
	if _, err := client.Update(ctx, snapshots.Info{Name: "committed", Labels: map[string]string{"x": "y"}}, "labels.x"); err != nil {
		t.Fatal(err)
	}
	// A directory no snapshot owns (a removal that crashed half-way).
	orphan := filepath.Join(sn.root, "snapshots", "999")
	if err := os.MkdirAll(filepath.Join(orphan, "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	cl, ok := client.(snapshots.Cleaner)
	if !ok {
		t.Fatal("the proxy does not offer Cleanup")
	}
	if err := cl.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan dir stays: %v", err)
	}
	if _, err := os.Stat(m[0].Source); err != nil {
		t.Errorf("cleanup removed a live snapshot's dir: %v", err)
	}
	if GuestPulled(t.TempDir()) {
		t.Error("an ordinary directory passes for a guest-pull rootfs")
	}
}
