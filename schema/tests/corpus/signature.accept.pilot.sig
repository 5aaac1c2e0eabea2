# skycast detached signature over the exact bytes of manifest.yaml
algorithm: ed25519
key_id: 0871f3aabc26e458
signature: V9TfRXCHqaRRrSOI1hsdui2VQ/2njI+1NUrxzas1csNxo3b+VcjtSduA6y/2L2gy1Kz+tt1b+qqjZUnpzz50Dw==
