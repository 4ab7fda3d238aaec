# Runs COMMAND (its arguments separated by |) and passes when it ends within TIMEOUT seconds with a nonzero
# status and output (stdout and stderr) matching the regular expression EXPECTED.
string(REPLACE "|" ";" command "${COMMAND}")
execute_process(COMMAND timeout --kill-after=5 ${TIMEOUT} ${command} RESULT_VARIABLE status OUTPUT_VARIABLE output
                ERROR_VARIABLE output)
message("${output}")
if(status EQUAL 0)
  message(FATAL_ERROR "the job succeeded; a rank should have failed it")
elseif(status EQUAL 124 OR status EQUAL 137)
  message(FATAL_ERROR "the job hung: still running after ${TIMEOUT} s")
elseif(NOT output MATCHES "${EXPECTED}")
  message(FATAL_ERROR "the job failed (status ${status}) without saying \"${EXPECTED}\"")
endif()
message("ended with status ${status} and the expected message")
