package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sccontainers/scc/imagesplit"
	"github.com/sccontainers/scc/imagesplit/layercrypt"
	"github.com/sccontainers/scc/internal/forward"
	"github.com/sccontainers/scc/internal/guestpull"
	"github.com/sccontainers/scc/shim"
)

// Image modes: where a container's image comes from.
const (
	// ModeImageHost is an image containerd pulled once on the host and
	// shares with the VM (a).
	ModeImageHost = "image-host"
	// ModeImageGuest is a fully encrypted image the guest pulls and
	// decrypts itself at each start (b).
	ModeImageGuest = "image-guest"
	// ModeImageSplit is a split image: its confidential layer pulled and
	// decrypted by the guest, its other layers attached from the host's
	// warm cache under dm-verity (c).
	ModeImageSplit = "image-split"
)

// ImageSeries are the start samples of one image mode and the bytes that
// crossed the guest's registry channel at each start.
type ImageSeries struct {
	Mode    Mode            `json:"mode"`
	First   time.Duration   `json:"first_ns"`
	Samples []time.Duration `json:"samples_ns"`
	// RegistryBytes are the bytes from the registry per measured start
	// (0 where the host shares the image it pulled once).
	RegistryBytes []int64 `json:"registry_bytes"`
	// ImageBytes is the size of the image's layer blobs.
	ImageBytes int64 `json:"image_bytes"`
}

// imageCommand is what each image-phase container runs.
var imageCommand = []string{"cat", "/secret.txt"}

// imagePhase measures (a), (b) and (c), alternating, with cold-booted VMs.
// The first, unmeasured round also fills (c)'s host cache.
func (r *runner) imagePhase(ctx context.Context) ([]ImageSeries, error) {
	dir := filepath.Join(r.opts.Dir, "guestpull")
	reg, err := guestpull.StartRegistry(ctx, r.opts.Registry, filepath.Join(dir, "registry"))
	if err != nil {
		return nil, err
	}
	defer reg.Stop()
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	broker, err := guestpull.StartBroker(bctx, dir)
	if err != nil {
		return nil, err
	}
	key, err := layercrypt.NewKBSKey("kbs:///default/image-key/bench")
	if err != nil {
		return nil, err
	}
	if err := broker.Server.SetResource(ctx, key.ResourcePath(), key.KEK); err != nil {
		return nil, err
	}
	work := filepath.Join(dir, "work")
	plain, err := guestpull.PushSecretImage(ctx, guestpull.ImageOptions{Busybox: r.opts.Busybox, Registry: reg.Addr, Repo: "bench-plain:v1", WorkDir: work})
	if err != nil {
		return nil, err
	}
	enc, err := guestpull.PushSecretImage(ctx, guestpull.ImageOptions{Busybox: r.opts.Busybox, Registry: reg.Addr, Repo: "bench-encrypted:v1",
		Rule: imagesplit.ByIndex{0, 1}, Recipients: []layercrypt.Recipient{key}, WorkDir: work})
	if err != nil {
		return nil, err
	}
	split, err := guestpull.PushSecretImage(ctx, guestpull.ImageOptions{Busybox: r.opts.Busybox, Registry: reg.Addr, Repo: "bench-split:v1",
		Rule: imagesplit.ByIndex{1}, Recipients: []layercrypt.Recipient{key}, WorkDir: work})
	if err != nil {
		return nil, err
	}
	// (a)'s image is on the node before the first start, as an image the
	// kubelet pulled earlier would be.
	if out, err := r.d.Ctr(ctx, "images", "pull", "--plain-http", plain.Ref).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pull %s on the host: %w: %s", plain.Ref, err, ctrError(string(out)))
	}

	mem := r.opts.StartVMMemoryMiB
	host := Mode{Key: ModeImageHost, Name: "(a) image shared from the host", Runtime: "io.containerd.scc.v2", VMMemoryMiB: mem, VCPUs: 1}
	guest := Mode{Key: ModeImageGuest, Name: "(b) encrypted image pulled in the guest", Runtime: "io.containerd.scc.v2", VMMemoryMiB: mem, VCPUs: 1}
	splitMode := Mode{Key: ModeImageSplit, Name: "(c) split image, warm host cache", Runtime: "io.containerd.scc.v2", VMMemoryMiB: mem, VCPUs: 1}
	gopts := r.opts
	gopts.KernelParams = append(slices.Clone(r.opts.KernelParams), guestpull.SimKernelParam)
	guestCfg := shimConfig(gopts, guest) + "\n" + broker.ShimConfig(reg.Addr, broker.Measurement, true)
	for _, c := range []struct {
		m   Mode
		cfg string
	}{
		{host, shimConfig(r.opts, host)},
		{guest, guestCfg},
		{splitMode, guestCfg + fmt.Sprintf("layer_cache = %q\n", filepath.Join(dir, "layer-cache"))},
	} {
		p := filepath.Join(r.opts.Dir, configKey(c.m)+".toml")
		if err := os.WriteFile(p, []byte(c.cfg), 0o644); err != nil {
			return nil, fmt.Errorf("write shim config: %w", err)
		}
		r.configs[configKey(c.m)] = p
	}

	series := []ImageSeries{{Mode: host, ImageBytes: plain.BlobBytes()}, {Mode: guest, ImageBytes: enc.BlobBytes()}, {Mode: splitMode, ImageBytes: split.BlobBytes()}}
	images := map[string]guestpull.SecretImage{ModeImageGuest: enc, ModeImageSplit: split}
	for run := 0; run <= r.opts.Runs; run++ {
		for i := range series {
			s := &series[i]
			id := fmt.Sprintf("image-%s-%d", s.Mode.Key, run)
			var (
				t     time.Duration
				bytes int64
				err   error
			)
			if s.Mode.Key == ModeImageHost {
				t, err = r.ctrRunImage(ctx, s.Mode, plain.Ref, id, []string{"--rm"}, imageCommand...)
			} else {
				si := images[s.Mode.Key]
				flags := []string{"--rm",
					"--annotation", shim.AnnotationImage + "=" + si.Ref,
					"--annotation", shim.AnnotationImageDigest + "=" + si.Digest.String()}
				t, bytes, err = r.guestPullRun(ctx, s.Mode, id, flags)
			}
			if err != nil {
				return nil, fmt.Errorf("image %s, run %d: %w", s.Mode.Name, run, err)
			}
			if run == 0 {
				s.First = t
				r.progressf("  %-42s first run   %v (not measured)\n", s.Mode.Name, t.Round(time.Millisecond))
				continue
			}
			s.Samples = append(s.Samples, t)
			s.RegistryBytes = append(s.RegistryBytes, bytes)
			r.progressf("  %-42s run %d/%d   %v, %d bytes from the registry\n", s.Mode.Name, run, r.opts.Runs, t.Round(time.Millisecond), bytes)
		}
	}
	return series, nil
}

// guestPullRun runs a confidential container and returns its wall time
// and the bytes that crossed its registry channel, read from the shim's
// count while the sandbox lives.
func (r *runner) guestPullRun(ctx context.Context, m Mode, id string, flags []string) (time.Duration, int64, error) {
	path := filepath.Join(r.opts.Dir, "run", id, shim.ForwardStatsName)
	stop := make(chan struct{})
	var (
		wg    sync.WaitGroup
		bytes int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var st map[string]forward.TargetStats
			if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &st) == nil {
				bytes = max(bytes, st[forward.TargetRegistry].FromTarget)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t, err := r.ctrRunImage(ctx, m, imageRef, id, flags, imageCommand...)
	close(stop)
	wg.Wait()
	return t, bytes, err
}

func medianBytes(b []int64) int64 {
	if len(b) == 0 {
		return 0
	}
	s := slices.Clone(b)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// imageTable compares (b) to (a); (c) is listed as not available.
func imageTable(rep *Report) table {
	t := table{
		title:  "Confidential images",
		header: []string{"mode", "runs", "median", "p90", "ratio to (a)", "bytes from the registry per start", "ratio to (a)", "image blobs"},
		notes: []string{
			fmt.Sprintf("`ctr run --rm <image> %s`, wall time, scc VMs cold-booted (%d MiB, 1 vCPU), modes alternating.", strings.Join(imageCommand, " "), rep.Settings.StartVMMemoryMiB),
			"(a): containerd pulled the image on the host once before; its snapshot is shared with the VM. (b): every layer encrypted (ocicrypt, kbs:/// key); the guest pulls it through the forwarded channel, attests to scc-kbs (simulated TEE), decrypts and unpacks in guest memory. Registry bytes are the shim's count of the channel's registry target.",
			"(c): busybox layer plain with an integrity descriptor (erofs, dm-verity root hash in the manifest), secret layer encrypted; the shim attaches the busybox layer from its cache (built in the unmeasured first round) as a read-only disk the guest checks under dm-verity, and only the confidential layer crosses the registry channel.",
		},
	}
	var base *ImageSeries
	for i := range rep.Image {
		if rep.Image[i].Mode.Key == ModeImageHost {
			base = &rep.Image[i]
		}
	}
	for _, s := range rep.Image {
		st := Summarize(s.Samples)
		ratio, bratio := "-", "-"
		b := medianBytes(s.RegistryBytes)
		if base != nil {
			ratio = formatRatio(Ratio(st, Summarize(base.Samples)))
			if bb := medianBytes(base.RegistryBytes); bb > 0 {
				bratio = fmt.Sprintf("%.2fx", float64(b)/float64(bb))
			} else if b > 0 {
				bratio = "(a) has none"
			}
		}
		t.rows = append(t.rows, []string{modeLabel(s.Mode), fmt.Sprint(st.N), formatDuration(st.Median), formatDuration(st.P90), ratio,
			formatBytes(uint64(b)), bratio, formatBytes(uint64(s.ImageBytes))})
	}
	return t
}
