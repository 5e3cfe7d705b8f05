from pyserver.cli import main

main()
