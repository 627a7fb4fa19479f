"""nlp_reuse: fine-tune, distill, compress and publish BERT-family text classifiers, with measured numbers."""

__version__ = "0.1.0"
