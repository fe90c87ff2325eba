from edgegen.cli import main

if __name__ == "__main__":  # helper processes (spawn) import this module without running it
    main()
