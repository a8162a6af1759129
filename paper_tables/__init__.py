"""Regenerate Narang et al.'s Table 3 (dense, sparse and larger sparse models) and the gradual-vs-hard comparison."""
