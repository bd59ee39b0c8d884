"""Hidden services: members of a service find each other and talk end to end (doc/hidden-services.md)."""
