"""selfdistill: replication of "Self-Distillation as Instance-Specific Label Smoothing"
(Zhang & Sabuncu, NeurIPS 2020). See SPEC §1-§7 (shared/SPEC.md) and README.md."""

__version__ = "0.1.0"
