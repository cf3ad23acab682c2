"""The runtime: nodes, processes, GenServers, monitors, links, groups."""
