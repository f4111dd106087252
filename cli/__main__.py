from praxis.cli.app import main

main()
