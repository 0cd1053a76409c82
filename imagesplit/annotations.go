package imagesplit

// Annotations on the manifest's descriptor of each non-confidential
// layer. They describe its integrity descriptor: an erofs image of the
// layer's files, protected by a dm-verity hash tree (format 1, SHA-256,
// 4096-byte data and hash blocks, the tree in a separate file that starts
// with a veritysetup superblock). The root hash is what the guest trusts:
// it arrives in the attested manifest, and dm-verity checks every block
// of the erofs image read through the host against it.
const (
	// AnnotationVerityRootHash is the hex root hash of the hash tree.
	AnnotationVerityRootHash = "io.scc.verity.root-hash"
	// AnnotationVeritySalt is the hex salt of the hash tree.
	AnnotationVeritySalt = "io.scc.verity.salt"
	// AnnotationErofsDigest is the OCI digest (sha256:...) of the erofs
	// image, padded to 4096 bytes, that the hash tree covers.
	AnnotationErofsDigest = "io.scc.erofs.digest"
	// AnnotationErofsSize is the size in bytes of that image.
	AnnotationErofsSize = "io.scc.erofs.size"
)
