"""The DICOM engine's shared pieces that need no pydicom: Part 10 structure checks, transfer
syntax facts and the pixel data length rule (more of the engine moves here step by step; see
docs/architecture.md)."""
