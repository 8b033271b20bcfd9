from gemvec.cli import main

main()
