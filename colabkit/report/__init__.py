"""What is read back from run folders: tables, figures, comparisons, status, inspection.

``tables`` loads runs and makes Table 1; ``figures`` and ``plotting`` draw; ``stats`` and
``compare`` weigh experiments against each other; ``status`` says where each run stands;
``inspection`` looks inside a trained network; ``write`` puts it all in one folder. Reads
run folders, never trains them; needs no GPU.
"""
