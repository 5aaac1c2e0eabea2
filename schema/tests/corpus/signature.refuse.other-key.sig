# skycast detached signature over the exact bytes of manifest.yaml
algorithm: ed25519
key_id: 519009716c866422
signature: 264VSA6sW7fOC9ZnFUxlif1GfUyvt3mf2VRyyX/m5mKHlM/mtAM+9zA3tQDW6etzYM2oaGoaGVFmSxz4+wOKDg==
