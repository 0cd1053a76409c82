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
//	                kbs-session-id cookie. tee is "snp", "tdx", "vtpm"
//	                or "sim".
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
// tee-pubkey is a public JWK. tee-evidence is a JSON object (a string
// holding one is accepted too) whose "tee" member must be the session's:
//
//	snp, sim  {"tee", "report": base64 1184-byte report, "cert_chain": {"vcek", "vlek", "ask", "ark"}}
//	          (snp.Evidence; the VCEK or VLEK must be there: nothing is fetched)
//	tdx       {"tee": "tdx", "quote": base64 v4 quote} (tdx.Evidence)
//	vtpm      {"tee": "vtpm", "quote": base64 TPMS_ATTEST, "signature": base64
//	          TPMT_SIGNATURE, "pcrs": {"<index>": hex SHA-256}, "ak_public":
//	          base64 TPMT_PUBLIC, "event_log": base64} (vtpm.Evidence)
//
// The evidence binds the session: the REPORT_DATA of an SNP, simulated
// or TDX report must equal attest.ReportData(nonce, tee-pubkey), a
// SHA-512; a TPM quote's qualifying data must equal its first 32 bytes
// (vtpm.QualifyingData), as every TPM takes 32 bytes there but not all
// take 64. That ties the evidence to this session and to the key the
// secret is encrypted to. TDX quotes are judged against the Intel PCS
// collateral in Config.TDXCollateralDir (scc-kbs --tdx-collateral), read
// at each TDX attestation; without it TDX evidence is refused.
//
// The token is an ES256 JWT (typ JWT) signed with a key kept in the data
// dir. Its claims are the spec's AttestationTokenPayload (iss "scc-kbs",
// iat, ext (= exp), jwk: the signing key as a JWK string, tee-pubkey,
// tcb-status: the JSON of the verified verifier.Claims, evaluation-report)
// plus exp, nbf, tee, measurement (hex: MEASUREMENT or MRTD), debug and
// workloads (the policy's workloads the evidence matched).
//
// Errors are the spec's ErrorInformation {type, detail} with type
// https://github.com/confidential-containers/kbs/errors/<problem> and,
// when the session's TEE is known, "tee". Problems: InvalidRequest (400:
// a body, key or evidence that does not decode), InvalidSession (401: no,
// unknown, expired or reused session), AttestationFailed (401: evidence
// whose signature or certificate chain fails, report data or
// quote nonce not bound to the session, TDX collateral missing or rating
// the platform's TCB level not UpToDate), PolicyDeny (403: the policy
// refuses the TEE type, the simulated root, the attestation key, the
// reference values, debug, the minimum TCB, or a resource rule refuses the
// session's workload), ResourceNotFound (404),
// AdminAuthFailed (401). Every response of a session says its TEE type in
// the Kbs-Tee header, and every decision is logged with its reason, the TEE
// type and a session id prefix.
//
// # Administration
//
//	POST /resource/{repository}/{type}/{tag}   body: the secret, raw bytes
//	POST /attestation-policy   AttestationPolicy {type: "scc",
//	                           policy_id: "default", policy: base64(JSON of
//	                           the "attestation" object below)}, or
//	                           policy_id: "workloads" with the "workloads"
//	                           object
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
// The policy is one JSON document (package policy; docs/attestation.md
// has a worked example), persisted in the data dir as policy.json
// (ParsePolicy reads it; scc-kbs --policy loads one at start). Hex values
// are fixed-size digests; unknown members are refused.
//
//	{
//	  "attestation": {                  // per TEE type; absent = refused
//	    "snp": {
//	      "allow": true,                // false or absent = refused
//	      "measurements": ["<96 hex>"], // accepted MEASUREMENTs
//	      "host_data": "<64 hex>",      // required HOST_DATA (init data digest)
//	      "allow_debug": false,         // accept guest policy DEBUG
//	      "allow_migration_agent": false,
//	      "min_tcb": {"bootloader": 0, "tee": 0, "snp": 0, "microcode": 0}
//	    },
//	    "sim": {                        // as snp, plus:
//	      "allow": true,
//	      "roots": ["<64 hex>"]         // sim.Authority.Root() fingerprints; required
//	    },
//	    "tdx": {
//	      "allow": true,
//	      "mrtd": ["<96 hex>"],         // accepted MRTDs
//	      "rtmrs": {"2": ["<96 hex>"]}, // accepted values per RTMR 0-3
//	      "mr_config_id": "<96 hex>",   // required MRCONFIGID (init data digest)
//	      "mr_owner": "<96 hex>", "mr_owner_config": "<96 hex>",
//	      "mr_seam": "<96 hex>",        // TDX module measurement
//	      "min_tee_tcb_svn": "<32 hex>", "min_qe_svn": 0, "min_pce_svn": 0,
//	      "allow_debug": false
//	    },
//	    "vtpm": {
//	      "allow": true,
//	      "trusted_aks": ["<64 hex>"],  // vtpm.AKDigest of trusted AKs; required
//	      "pcrs": {"8": ["<64 hex>"]},  // accepted SHA-256 values per PCR 0-23
//	      "origin": {                   // optional: how the guest started
//	        "fresh": true,              // accept guests that booted
//	        "snapshots": ["<64 hex>"],  // accept guests restored from these templates
//	        "max_generation": 0         // tenants a reused guest may have served before; 0: never reused
//	      }
//	    }
//	  },
//	  "workloads": {                    // optional: named reference values
//	    "web": {
//	      "snp":  {"measurements": [...], "host_data": "..."},
//	      "tdx":  {"mrtd": [...], "rtmrs": {...}, "mr_config_id": "..."},
//	      "vtpm": {"pcrs": {...}}
//	    }
//	  },
//	  "resources": {                    // optional extra rules per resource
//	    "default/web-key/*": {          // path.Match pattern on repo/type/tag
//	      "tees": ["snp"],              // TEE types allowed; empty = any
//	      "measurements": ["<96 hex>"], // MEASUREMENT or MRTD allowed; empty = any
//	      "workloads": ["web"]          // workloads allowed; empty = any
//	    }
//	  }
//	}
//
// Reference values (measurements, host_data, mrtd, rtmrs, mr_config_id,
// pcrs) may sit in a TEE's policy, where every guest of that type must
// hold them, or in workloads. Evidence is accepted when it is authentic,
// meets its TEE's platform terms, and holds the TEE-level reference
// values if any, else those of at least one workload; every accepted
// guest must be pinned by its launch measurement (MRTD for tdx, PCRs for
// vtpm), at one level or the other. The workloads it matches are recorded
// in the session and its token; a resource rule with "workloads" releases
// only to sessions that matched one of them.
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
