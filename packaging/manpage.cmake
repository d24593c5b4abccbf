# Writes pgshift(1) from `pgshift --help`: the text as it is (no-fill), under
# NAME, DESCRIPTION and FILES. Run with -DPGSHIFT=binary -DVERSION=
# -DSYSCONFDIR= -DDOCDIR= -DOUT=path.
execute_process(COMMAND ${PGSHIFT} --help OUTPUT_VARIABLE help RESULT_VARIABLE failed)
if(failed)
  message(FATAL_ERROR "pgshift --help failed: ${failed}")
endif()
# roff: a backslash is \e; a line may not begin with . or '.
string(REPLACE "\\" "\\e" help "${help}")
string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" help "${help}")
file(WRITE ${OUT} ".TH PGSHIFT 1 \"\" \"pgshift ${VERSION}\" \"User Commands\"
.SH NAME
pgshift \\- a PostgreSQL proxy that moves tables without downtime
.SH DESCRIPTION
.nf
${help}.fi
.SH FILES
.TP
.I ${SYSCONFDIR}/pgshift/pgshift.toml
the configuration the service reads (see the example in it)
.SH SEE ALSO
The README and the runbook in ${DOCDIR}.
")
execute_process(COMMAND gzip -9nf ${OUT} RESULT_VARIABLE failed)
if(failed)
  message(FATAL_ERROR "gzip failed: ${failed}")
endif()
