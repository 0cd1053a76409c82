package shim

import (
	"context"
	"fmt"
	"os"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/v2/core/content/proxy"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// grpcAddressEnv is where containerd tells its shims its gRPC address.
const grpcAddressEnv = "GRPC_ADDRESS"

// hostImage is the image containerd built a container's spec from (CRI
// and ctr take the process, environment, working directory and user from
// its config): as containerd resolved it, which a confidential
// container's guest must then pull.
type hostImage struct {
	name   string        // containerd's image name
	target digest.Digest // the manifest or index containerd resolved
	config digest.Digest // the config of the platform's manifest
}

// lookupHostImage asks containerd for the image of container id, in the
// namespace of ctx.
func lookupHostImage(ctx context.Context, id string) (hostImage, error) {
	addr := os.Getenv(grpcAddressEnv)
	if addr == "" {
		return hostImage{}, fmt.Errorf("containerd did not give the shim its address (%s): %w", grpcAddressEnv, errdefs.ErrFailedPrecondition)
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return hostImage{}, err
	}
	// The request's own metadata is ttrpc's; gRPC needs the namespace in
	// its own.
	ctx = namespaces.WithNamespace(ctx, ns)
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return hostImage{}, fmt.Errorf("connect to containerd: %w", err)
	}
	defer conn.Close()

	c, err := containersapi.NewContainersClient(conn).Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		return hostImage{}, fmt.Errorf("container %s in containerd: %w", id, errgrpc.ToNative(err))
	}
	name := c.GetContainer().GetImage()
	if name == "" {
		return hostImage{}, fmt.Errorf("container %s has no image in containerd: %w", id, errdefs.ErrNotFound)
	}
	img, err := imagesapi.NewImagesClient(conn).Get(ctx, &imagesapi.GetImageRequest{Name: name})
	if err != nil {
		return hostImage{}, fmt.Errorf("image %s in containerd: %w", name, errgrpc.ToNative(err))
	}
	t := img.GetImage().GetTarget()
	target := ocispec.Descriptor{MediaType: t.GetMediaType(), Digest: digest.Digest(t.GetDigest()), Size: t.GetSize()}
	if err := target.Digest.Validate(); err != nil {
		return hostImage{}, fmt.Errorf("image %s target %q: %w", name, target.Digest, errdefs.ErrInvalidArgument)
	}
	cfg, err := images.Config(ctx, proxy.NewContentStore(contentapi.NewContentClient(conn)), target, platforms.Default())
	if err != nil {
		return hostImage{}, fmt.Errorf("config of image %s in containerd: %w", name, errgrpc.ToNative(err))
	}
	return hostImage{name: name, target: target.Digest, config: cfg.Digest}, nil
}
