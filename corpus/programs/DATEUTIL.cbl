       IDENTIFICATION DIVISION.
       PROGRAM-ID. DATEUTIL.
      *----------------------------------------------------------------
      * DATEUTIL - COMMON DATE UTILITY SUBPROGRAM
      *
      * CALLED SUBPROGRAM (NO FILES).  EVERY LOAN SERVICING BATCH
      * PROGRAM CALLS IT FOR CALENDAR ARITHMETIC SO THAT LEAP YEARS,
      * MONTH-END CLIPPING AND DATE EDITING ARE DONE ONE WAY ONLY.
      *
      * CALLING SEQUENCE:   CALL 'DATEUTIL' USING DATEUTIL-PARMS
      * FUNCTIONS (DU-FUNCTION):
      *   V  VALIDATE DU-DATE-1 (CCYYMMDD, YEAR 1900-2199)
      *   A  ADD DU-NUMBER DAYS TO DU-DATE-1          -> DU-RESULT-DATE
      *   M  ADD DU-NUMBER MONTHS TO DU-DATE-1        -> DU-RESULT-DATE
      *      THE DAY IS CLIPPED TO THE LAST DAY OF THE TARGET MONTH,
      *      E.G. 20240131 + 1 MONTH = 20240229.
      *   D  DAYS FROM DU-DATE-1 TO DU-DATE-2         -> DU-RESULT-DAYS
      *   F  EDIT DU-DATE-1 AS MM/DD/CCYY            -> DU-RESULT-EDITED
      * DU-NUMBER MAY BE NEGATIVE FOR A AND M.
      * RETURN (DU-RETURN-CODE): 00 OK, 10 DATE-1 INVALID,
      *         20 DATE-2 INVALID, 90 UNKNOWN FUNCTION.
      *
      * COPYBOOKS USED: DATEWS (IN THE LINKAGE SECTION)
      * CALLED BY: LONPF2, LONIN1, LONAM1, LONDL1, LONES1, LONST1,
      *            LONPO1, LONRC1
      * DAY NUMBERS COME FROM FUNCTION INTEGER-OF-DATE, SO DAY COUNTS
      * ARE ACTUAL CALENDAR DAYS (NOT 30/360).
      *----------------------------------------------------------------
       DATA DIVISION.
       WORKING-STORAGE SECTION.
       01  WS-DAY-NUMBER                   PIC S9(9)     COMP.
       01  WS-DAY-NUMBER-2                 PIC S9(9)     COMP.
       01  WS-MONTH-COUNT                  PIC S9(9)     COMP.
       01  WS-SPLIT-DATE                   PIC 9(08).
       01  WS-SPLIT-DATE-R  REDEFINES WS-SPLIT-DATE.
           05  WS-CCYY                     PIC 9(04).
           05  WS-MM                       PIC 9(02).
           05  WS-DD                       PIC 9(02).
       01  WS-LAST-DAY                     PIC 9(02).
       01  WS-DAYS-IN-MONTH-DATA           PIC X(24)
                                   VALUE '312831303130313130313031'.
       01  WS-DAYS-IN-MONTH-TABLE  REDEFINES WS-DAYS-IN-MONTH-DATA.
           05  WS-DAYS-IN-MONTH            PIC 9(02) OCCURS 12 TIMES.
       LINKAGE SECTION.
           COPY DATEWS.
       PROCEDURE DIVISION USING DATEUTIL-PARMS.
       0000-MAIN.
           SET DU-OK TO TRUE
           PERFORM 1000-CHECK-DATE-1
           IF DU-OK
               EVALUATE TRUE
                   WHEN DU-FN-VALIDATE
                       CONTINUE
                   WHEN DU-FN-ADD-DAYS
                       PERFORM 2000-ADD-DAYS
                   WHEN DU-FN-ADD-MONTHS
                       PERFORM 3000-ADD-MONTHS
                   WHEN DU-FN-DAYS-BETWEEN
                       PERFORM 4000-DAYS-BETWEEN
                   WHEN DU-FN-FORMAT
                       PERFORM 5000-FORMAT-DATE
                   WHEN OTHER
                       SET DU-INVALID-FUNCTION TO TRUE
               END-EVALUATE
           END-IF
           GOBACK.

       1000-CHECK-DATE-1.
           IF DU-DATE-1 NOT NUMERIC
           OR DU-DATE-1 < 19000101 OR DU-DATE-1 > 21991231
               SET DU-INVALID-DATE-1 TO TRUE
           ELSE
               IF FUNCTION TEST-DATE-YYYYMMDD (DU-DATE-1) NOT = 0
                   SET DU-INVALID-DATE-1 TO TRUE
               END-IF
           END-IF.

       2000-ADD-DAYS.
           COMPUTE WS-DAY-NUMBER =
                   FUNCTION INTEGER-OF-DATE (DU-DATE-1) + DU-NUMBER
           COMPUTE DU-RESULT-DATE =
                   FUNCTION DATE-OF-INTEGER (WS-DAY-NUMBER).

       3000-ADD-MONTHS.
      *    WORK IN "MONTHS SINCE YEAR ZERO" SO NEGATIVE DU-NUMBER AND
      *    YEAR ROLL-OVER ARE HANDLED BY THE SAME ARITHMETIC.
           MOVE DU-DATE-1 TO WS-SPLIT-DATE
           COMPUTE WS-MONTH-COUNT = WS-CCYY * 12 + WS-MM - 1 + DU-NUMBER
           COMPUTE WS-CCYY = WS-MONTH-COUNT / 12
           COMPUTE WS-MM = FUNCTION MOD (WS-MONTH-COUNT, 12) + 1
           MOVE WS-DAYS-IN-MONTH (WS-MM) TO WS-LAST-DAY
           IF WS-MM = 2 AND FUNCTION MOD (WS-CCYY, 4) = 0
              AND (FUNCTION MOD (WS-CCYY, 100) NOT = 0
                   OR FUNCTION MOD (WS-CCYY, 400) = 0)
               MOVE 29 TO WS-LAST-DAY
           END-IF
           IF WS-DD > WS-LAST-DAY
               MOVE WS-LAST-DAY TO WS-DD
           END-IF
           MOVE WS-SPLIT-DATE TO DU-RESULT-DATE.

       4000-DAYS-BETWEEN.
           IF DU-DATE-2 NOT NUMERIC
           OR FUNCTION TEST-DATE-YYYYMMDD (DU-DATE-2) NOT = 0
               SET DU-INVALID-DATE-2 TO TRUE
           ELSE
               COMPUTE WS-DAY-NUMBER =
                       FUNCTION INTEGER-OF-DATE (DU-DATE-1)
               COMPUTE WS-DAY-NUMBER-2 =
                       FUNCTION INTEGER-OF-DATE (DU-DATE-2)
               COMPUTE DU-RESULT-DAYS = WS-DAY-NUMBER-2 - WS-DAY-NUMBER
           END-IF.

       5000-FORMAT-DATE.
           MOVE DU-DATE-1 TO WS-SPLIT-DATE
           STRING WS-MM '/' WS-DD '/' WS-CCYY
               DELIMITED BY SIZE INTO DU-RESULT-EDITED
           END-STRING.
