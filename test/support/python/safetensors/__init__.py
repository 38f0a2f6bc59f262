"""A stand-in for the safetensors package in the tests (Debian has no python3-safetensors).

Only what the README's example uses: safetensors.numpy.save and load, with the library's layout.
The real package's files are tested in test/safetensors.test.ts (test/fixtures/safetensors).
"""
