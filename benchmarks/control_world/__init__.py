"""Control World: a synthetic sprite world where motion control is exactly measurable (see README.md here).
Not part of the pack: MotionKit's nodes never import it."""
