from mcp_servers.prometheus.server import main

main()
