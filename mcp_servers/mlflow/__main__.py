from mcp_servers.mlflow.server import main

main()
