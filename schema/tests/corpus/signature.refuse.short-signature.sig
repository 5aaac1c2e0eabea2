# skycast detached signature over the exact bytes of manifest.yaml
algorithm: ed25519
key_id: 0871f3aabc26e458
signature: AAAA
