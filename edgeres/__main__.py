from edgeres.cli.app import main

main()
