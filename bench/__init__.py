"""jacnet's benchmark suite: jacnet against PyTorch CPU eager and scikit-learn's MLP.

Run it from the repository root with ``python -m bench.run`` (``--help`` lists the options);
``bench/README.md`` describes what is measured and how.
"""
