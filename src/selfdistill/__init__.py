"""selfdistill: replication of "Self-Distillation as Instance-Specific Label Smoothing"
(Zhang & Sabuncu, NeurIPS 2020). See docs/methods.md (methods §1-§8) and README.md."""

__version__ = "0.1.0"
