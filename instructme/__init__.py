"""instructme: instruction-guided music editing and remixing with latent diffusion.

An open implementation of InstructME (Han et al., arXiv 2308.14360).
"""

__version__ = "0.1.0"
