// Package guestpull sets up what confidential containers pull their images
// from, for the end-to-end tests and the benchmark: distribution's
// registry on 127.0.0.1, scc-kbs with a policy that names a simulated TEE
// explicitly, and images whose confidential layer holds a secret line and
// a marker string, encrypted with imagesplit.
package guestpull
