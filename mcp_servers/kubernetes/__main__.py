from mcp_servers.kubernetes.server import main

main()
