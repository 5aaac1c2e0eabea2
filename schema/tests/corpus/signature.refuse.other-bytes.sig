# skycast detached signature over the exact bytes of manifest.yaml
algorithm: ed25519
key_id: 0871f3aabc26e458
signature: SD/M3I5fbJhHaxm70qmi/xmPCJ5E481gGAuSKjPaTT+HFngxWxgj1QBE1khBUG6w7JcZHwMSkeS0IlNTabvMDA==
