# boot.py: runs first on every boot; keeps the relay pin low before anything else (drivers come later).
