"""Getting trained networks out: parameters to files and back into Nengo objects."""
