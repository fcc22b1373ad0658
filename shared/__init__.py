"""The library every Leadline service is built from (delivery guarantees live here, once)."""
