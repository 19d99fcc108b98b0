"""hats.image: compose, compress, inspect, verify and lint HATs system images."""
