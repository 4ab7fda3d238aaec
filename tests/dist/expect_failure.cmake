# Runs COMMAND (its arguments separated by |) and passes when it ends within TIMEOUT seconds with a nonzero
# status and output (stdout and stderr) matching the regular expression EXPECTED.
string(REPLACE "|" ";" command "${COMMAND}")
string(TIMESTAMP start "%s")
execute_process(COMMAND timeout --kill-after=5 ${TIMEOUT} ${command} RESULT_VARIABLE status OUTPUT_VARIABLE output
                ERROR_VARIABLE output)
string(TIMESTAMP end "%s")
math(EXPR seconds "${end} - ${start}")
message("${output}")
if(seconds GREATER_EQUAL TIMEOUT)
  message(FATAL_ERROR "the job hung: stopped by `timeout` after ${seconds} s")
elseif(status EQUAL 0)
  message(FATAL_ERROR "the job succeeded; a rank should have failed it")
elseif(NOT output MATCHES "${EXPECTED}")
  message(FATAL_ERROR "the job failed (status ${status}) without saying \"${EXPECTED}\"")
endif()
message("ended in ${seconds} s with status ${status} and the expected message")
