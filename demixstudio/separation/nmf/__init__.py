"""The NMF family: a shared torch engine and the methods built on it.

``engine`` runs β-divergence multiplicative updates over frame blocks;
``spectra`` turns audio into magnitude blocks, learns dictionaries from
example recordings and builds soft masks; ``grouping`` clusters components
into sources; ``tasks`` runs independent small fits side by side, one per CPU
thread. Each method lives in its own module and registers itself.
"""
