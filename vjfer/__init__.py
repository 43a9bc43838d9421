"""vjfer: frozen V-JEPA video encoders and attentive probes for facial expression recognition.

Reproduces Eing et al. (2026) as a two-stage feature-cache pipeline: `vjfer extract` encodes every
clip once into HDF5 shards; `vjfer probe` trains and evaluates probes from those shards alone.
"""

__version__ = "0.2.0"
