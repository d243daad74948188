"""The bottom layer: errors, atomic files, the cache folder and hardware detection. Imports no other layer."""
