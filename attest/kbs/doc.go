// Package kbs is scc's key broker: an HTTP server speaking the Trustee
// Key Broker Service protocol (github.com/confidential-containers/trustee,
// kbs/docs/kbs.yaml) that releases secrets, such as image layer keys, only
// to guests whose hardware-signed evidence satisfies its policy.
//
// # Protocol
//
// All paths are under /kbs/v0.
//
//	POST /auth      Request {version, tee, extra-params} -> Challenge
//	                {nonce, extra-params: {"tee": ...}}; sets the
//	                kbs-session-id cookie. tee is "snp" or "sim".
//	POST /attest    Attestation {tee-pubkey, tee-evidence} with the cookie
//	                -> AttestationToken {token}. The nonce is single-use:
//	                the session leaves the challenged state whatever the
//	                outcome, and expires ChallengeTTL (5 min) after /auth.
//	GET  /resource/{repository}/{type}/{tag}
//	                with the attested session's cookie, or the token as
//	                "Authorization: Bearer", -> the resource as a JWE
//	                (flattened JSON serialization, the spec's Response)
//	                encrypted to tee-pubkey: RSA-OAEP-256 for an RSA key
//	                (>= 2048 bits), ECDH-ES+A256KW for an EC key (P-256,
//	                P-384, P-521); content A256GCM. Sessions and tokens
//	                expire SessionTTL (5 min) after attestation.
//
// tee-pubkey is a public JWK. tee-evidence is the JSON object of
// snp.Evidence ({"tee", "report", "cert_chain"}); a string holding that
// object is accepted too. The report's REPORT_DATA must equal
// attest.ReportData(nonce, tee-pubkey): that binds the evidence to this
// session and to the key the secret is encrypted to.
//
// The token is an ES256 JWT (typ JWT) signed with a key kept in the data
// dir. Its claims are the spec's AttestationTokenPayload (iss "scc-kbs",
// iat, ext (= exp), jwk: the signing key as a JWK string, tee-pubkey,
// tcb-status: the JSON of the verified snp.Claims, evaluation-report) plus
// exp, nbf, tee, measurement (hex) and debug.
//
// Errors are the spec's ErrorInformation {type, detail} with type
// https://github.com/confidential-containers/kbs/errors/<problem> and,
// when the session's TEE is known, "tee". Problems: InvalidRequest (400),
// InvalidSession (401: no, unknown, expired or reused session),
// AttestationFailed (401: forged or malformed evidence, report data not
// bound to the session), PolicyDeny (403: the policy refuses the TEE type,
// the simulated root, the measurement, debug, ...), ResourceNotFound (404),
// AdminAuthFailed (401). Every response of a session says its TEE type in
// the Kbs-Tee header, and every decision is logged with its reason, the TEE
// type and a session id prefix.
//
// # Administration
//
//	POST /resource/{repository}/{type}/{tag}   body: the secret, raw bytes
//	POST /attestation-policy   AttestationPolicy {type: "scc",
//	                           policy_id: "default", policy: base64(JSON of
//	                           the "attestation" object below)}
//	POST /resource-policy      ResourcePolicy {policy: base64(JSON of the
//	                           "resources" object below)}
//
// Admin requests carry "Authorization: Bearer <JWT>", a JWT signed with
// EdDSA (Ed25519) by the key whose public half is given to the server
// (scc-kbs --admin-pubkey, PEM "PUBLIC KEY"), with iat and exp claims, as
// Trustee's admin tokens are. NewAdminToken makes one. The token is valid
// until exp (one minute of clock skew tolerated), for any number of
// requests: keep lifetimes short. Without an admin key the admin endpoints
// refuse everything.
//
// # Policy
//
// The policy is one JSON document, persisted in the data dir as
// policy.json (ParsePolicy reads it; scc-kbs --policy loads one at start):
//
//	{
//	  "attestation": {                 // per TEE type; absent = refused
//	    "snp": {
//	      "allow": true,               // false or absent = refused
//	      "measurements": ["<96 hex>"],// accepted MEASUREMENTs; >= 1 needed
//	      "allow_debug": false,        // accept guest policy DEBUG
//	      "allow_migration_agent": false,
//	      "host_data": "<64 hex>",     // optional required HOST_DATA
//	      "min_tcb": {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 0}
//	    },
//	    "sim": {
//	      "allow": true,
//	      "roots": ["<64 hex>"],       // sim.Authority.Root() fingerprints; >= 1 needed
//	      "measurements": ["<96 hex>"]
//	    }
//	  },
//	  "resources": {                   // optional extra rules per resource
//	    "default/image-key/*": {       // path.Match pattern on repo/type/tag
//	      "tees": ["snp"],             // TEE types allowed; empty = any
//	      "measurements": ["<96 hex>"] // measurements allowed; empty = any
//	    }
//	  }
//	}
//
// The default policy (no document) refuses every TEE; in particular it
// refuses simulated evidence with sim.ErrSimNotAllowed. A resource no rule
// matches goes to any session the attestation policy accepted; when
// several rules match, all apply.
//
// # Data dir
//
//	tls.crt, tls.key    self-signed certificate (HTTPS); its SHA-256 is logged
//	                    at start and is the pin guests check
//	token-key.pem       ES256 token signing key
//	store.key           AES-256-GCM key of the resource store (0600)
//	resources.enc       the resources, encrypted with store.key
//	policy.json         the policy document
//
// Private key files must not be readable by group or others; the broker
// refuses to start otherwise.
package kbs
