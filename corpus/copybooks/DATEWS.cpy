      *----------------------------------------------------------------
      * COPYBOOK:  DATEWS
      * TITLE:     DATE WORK AREAS AND DATEUTIL PARAMETER BLOCK
      *
      * DATE-WORK-AREAS
      *   DW-CONTROL-CARD   BUSINESS DATE CARD READ FROM SYSIN BY EVERY
      *                     BATCH PROGRAM:   BUSDATE=CCYYMMDD
      *                     IT COMES FROM LNSV.PROD.CONTROL(BUSDATE) SO
      *                     A RERUN USES THE ORIGINAL BUSINESS DATE,
      *                     NOT THE MACHINE CLOCK.
      *   DW-BUSINESS-DATE  THE BUSINESS DATE, WITH A CCYY/MM/DD
      *                     BREAKDOWN.
      *   DW-WORK-DATE      SCRATCH DATE WITH THE SAME BREAKDOWN.
      *
      * DATEUTIL-PARMS  (CALL 'DATEUTIL' USING DATEUTIL-PARMS)
      *   DU-FUNCTION  V  VALIDATE DU-DATE-1
      *                A  DU-DATE-1 + DU-NUMBER DAYS   -> DU-RESULT-DATE
      *                M  DU-DATE-1 + DU-NUMBER MONTHS -> DU-RESULT-DATE
      *                   (DAY IS CLIPPED TO THE END OF THE MONTH)
      *                D  DAYS FROM DU-DATE-1 TO DU-DATE-2
      *                   -> DU-RESULT-DAYS (NEGATIVE IF DATE-2 EARLIER)
      *                F  DU-DATE-1 AS MM/DD/CCYY -> DU-RESULT-EDITED
      *   DU-RETURN-CODE  00 OK, 10 DATE-1 INVALID, 20 DATE-2 INVALID,
      *                   90 UNKNOWN FUNCTION
      *
      * NOTE: NO VALUE CLAUSES HERE - DATEUTIL COPIES THIS MEMBER INTO
      * ITS LINKAGE SECTION.
      *----------------------------------------------------------------
       01  DATE-WORK-AREAS.
           05  DW-CONTROL-CARD.
               10  DW-CARD-KEYWORD         PIC X(08).
                   88  DW-CARD-IS-BUSDATE      VALUE 'BUSDATE='.
               10  DW-CARD-BUS-DATE        PIC X(08).
               10  FILLER                  PIC X(64).
           05  DW-BUSINESS-DATE            PIC 9(08).
           05  DW-BUSINESS-DATE-R  REDEFINES DW-BUSINESS-DATE.
               10  DW-BUS-CCYY             PIC 9(04).
               10  DW-BUS-MM               PIC 9(02).
               10  DW-BUS-DD               PIC 9(02).
           05  DW-WORK-DATE                PIC 9(08).
           05  DW-WORK-DATE-R  REDEFINES DW-WORK-DATE.
               10  DW-WORK-CCYY            PIC 9(04).
               10  DW-WORK-MM              PIC 9(02).
               10  DW-WORK-DD              PIC 9(02).
           05  DW-EDITED-DATE              PIC X(10).
      *
       01  DATEUTIL-PARMS.
           05  DU-FUNCTION                 PIC X(01).
               88  DU-FN-VALIDATE              VALUE 'V'.
               88  DU-FN-ADD-DAYS              VALUE 'A'.
               88  DU-FN-ADD-MONTHS            VALUE 'M'.
               88  DU-FN-DAYS-BETWEEN          VALUE 'D'.
               88  DU-FN-FORMAT                VALUE 'F'.
           05  DU-DATE-1                   PIC 9(08).
           05  DU-DATE-2                   PIC 9(08).
           05  DU-NUMBER                   PIC S9(05)    COMP-3.
           05  DU-RESULT-DATE              PIC 9(08).
           05  DU-RESULT-DAYS              PIC S9(07)    COMP-3.
           05  DU-RESULT-EDITED            PIC X(10).
           05  DU-RETURN-CODE              PIC X(02).
               88  DU-OK                       VALUE '00'.
               88  DU-INVALID-DATE-1           VALUE '10'.
               88  DU-INVALID-DATE-2           VALUE '20'.
               88  DU-INVALID-FUNCTION         VALUE '90'.
