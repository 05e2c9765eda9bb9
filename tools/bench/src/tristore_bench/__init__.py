"""tristore's benchmark tooling, a distribution of its own beside the library.

It depends on ``tristore``; the library never imports it. Importing this package must stay
cheap and free of heavy dependencies: the asv suite imports ``tristore_bench.instructions``
from the checkout at HEAD while the library under measurement comes from each commit.
"""
